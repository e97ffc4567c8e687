"""The plan and the graph of fused embeddings: several co-registered modalities, one embedding.

A :class:`FusedPlan` is an :class:`~xterrafm.embedding.plan.EmbedPlan` (made by
:func:`~xterrafm.embedding.plan.make_plan` for the anchor modality: same windows, blocks,
model spec, resources and output grid) that also records the modalities stacked in the pixel
array, their band counts and the date each other modality was paired with. The store writer
takes it like any plan: its ``fingerprint`` and ``attrs`` name the modalities and the pairing.

:func:`fused_embed_dask` stacks the modalities' pixels along the band axis, re-blocks the stack
with :func:`xterrafm.embedding.graph.reblock` and maps
:func:`xterrafm.embedding.fused_blocks.embed_fused_block` over it. No xarray here: the
xarray layer is :mod:`xterrafm.embedding.fused_api`.

Fused embeddings run the model's cross-attention fusion, whose parameters (``patch_embed.fusion.*``)
the published TerraFM checkpoints do not carry: :func:`make_fused_plan` refuses a weights file
without them (a model pretrained with fusion, e.g. exported by ``python -m xterrafm.pretrain``,
has them).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import get_modality
from xterrafm.embedding.fused_blocks import embed_fused_block
from xterrafm.embedding.graph import reblock
from xterrafm.embedding.plan import EmbedPlan, make_plan
from xterrafm.embedding.settings import EmbedSettings
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows
from xterrafm.errors import NoFusionWeightsError, UsageError

with import_gate():
    import dask
    import dask.array as da
    import numpy as np
    from odc.geo.geobox import GeoBox

__all__ = ["FUSION_NOTE", "FusedPlan", "fused_embed_dask", "has_fusion_weights",
           "make_fused_plan"]

#: How fused windows are made, recorded with every fused output.
FUSION_NOTE = ("cross-attention fusion of the modalities valid in each window (TerraFM "
               "forward_fused); a window where only one modality is valid is embedded from that "
               "modality alone")

#: State-dict prefix of the fusion parameters (the same as xterrafm.models.terrafm's).
_FUSION_PREFIX = "patch_embed.fusion."


def has_fusion_weights(weights: str | None) -> bool:
    """Whether a weights file holds the fusion parameters (``patch_embed.fusion.*``).

    None (the seeded random initialisation) counts as having them. ``.safetensors`` files are
    checked from their header; other files are read (safely, ``weights_only``).
    """
    if weights is None:
        return True
    path = Path(weights)
    if path.suffix == ".safetensors":
        with import_gate():
            from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    else:
        from xterrafm.weights import read_weights

        keys = list(read_weights(path))
    return any(k.startswith(_FUSION_PREFIX) for k in keys)


@dataclass(frozen=True)
class FusedPlan(EmbedPlan):
    """An embed plan over several co-registered modalities (see the module docstring).

    Attributes
    ----------
    modalities : tuple of str
        Modalities in the order their bands are stacked; the first is the anchor, whose dates
        are the output's (``spec.modality``).
    channels : tuple of int
        Bands of each modality in the stack.
    paired : tuple of tuple of str
        For each modality after the anchor, the date paired with each output date (ISO
        string), ``""`` where none lies within ``settings.pair_tolerance``.
    """

    modalities: tuple[str, ...] = ()
    channels: tuple[int, ...] = ()
    paired: tuple[tuple[str, ...], ...] = ()

    @property
    def fingerprint(self) -> dict:
        """The base fingerprint with the modalities, the pairing tolerance and the pairs."""
        out = dict(super().fingerprint)
        out["modality"] = "+".join(self.modalities)
        out["modalities"] = list(self.modalities)
        out["pair_tolerance"] = self.settings.pair_tolerance
        out["paired_time"] = {m: list(p) for m, p in zip(self.modalities[1:], self.paired,
                                                           strict=True)}
        return out

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance attributes (JSON-friendly): the base ones, with ``modality`` naming all
        modalities (``"s2_l2a+s1"``), ``bands`` as ``modality/band``, ``fusion``, and for each
        other modality ``paired_time_<modality>``."""
        out = dict(super().attrs)
        out["modality"] = "+".join(self.modalities)
        out["modalities"] = list(self.modalities)
        out["bands"] = [f"{m}/{b}" for m in self.modalities
                        for b in get_modality(m).band_names]
        out["fusion"] = FUSION_NOTE
        out["pair_tolerance"] = self.settings.pair_tolerance
        for m, p in zip(self.modalities[1:], self.paired, strict=True):
            out[f"paired_time_{m}"] = list(p)
        return out


def make_fused_plan(settings: EmbedSettings, *, modalities: Sequence[str], geobox: GeoBox,
                    chunks: tuple[Sequence[int], Sequence[int]], times: Sequence[str] = (),
                    paired: Sequence[Sequence[str]] = (), client: Any = None) -> FusedPlan:
    """Decide a fused embedding job.

    Parameters
    ----------
    settings : EmbedSettings
    modalities : sequence of str
        Canonical modalities, the anchor first (at least two, all different).
    geobox, chunks, times, client
        As for :func:`~xterrafm.embedding.plan.make_plan` (the anchor's dates).
    paired : sequence of sequence of str
        For each modality after the anchor, its date paired with each of ``times`` (``""``:
        none).

    Returns
    -------
    FusedPlan

    Raises
    ------
    UsageError
        Fewer than two or repeated modalities, or a model without a stem for one of them.
    NoFusionWeightsError
        The weights file has no fusion parameters (the published checkpoints have none).
    """
    mods = tuple(modalities)
    if len(mods) < 2 or len(set(mods)) != len(mods):
        raise UsageError(f"fused embeddings need two or more different modalities; got {mods}")
    if len(paired) != len(mods) - 1 or any(len(p) != len(times) for p in paired):
        raise UsageError("paired must hold one date per output date for each modality after "
                         "the anchor")
    base = make_plan(settings, modality=mods[0], geobox=geobox, chunks=chunks, times=times,
                     client=client)
    if not has_fusion_weights(base.spec.weights):
        raise NoFusionWeightsError(
            f"weights {settings.weights!r} hold no fusion parameters (patch_embed.fusion.*): "
            "the published TerraFM checkpoints carry none, so they cannot fuse modalities. Use "
            "a model pretrained with fusion (e.g. the export of python -m xterrafm.pretrain), "
            "or embed each modality on its own")
    return FusedPlan(**{f.name: getattr(base, f.name) for f in dataclasses.fields(EmbedPlan)},
                     modalities=mods,
                     channels=tuple(get_modality(m).n_bands for m in mods),
                     paired=tuple(tuple(str(d) for d in p) for p in paired))


def _fused_task(block: np.ndarray, *, spec: ModelSpec, modalities: tuple[str, ...],
                channels: tuple[int, ...], y: AxisWindows, x: AxisWindows, min_valid: float,
                block_info: dict | None = None) -> np.ndarray:
    (oy0, oy1), (ox0, ox1) = block_info[None]["array-location"][2:]
    return embed_fused_block(block, spec=spec, modalities=modalities, channels=channels, y=y,
                             x=x, y_span=y.span(oy0, oy1), x_span=x.span(ox0, ox1),
                             min_valid=min_valid)


def fused_embed_dask(pixels: Sequence[da.Array], plan: FusedPlan, *,
                     salt: str | None = None) -> da.Array:
    """Lazy fused embeddings of co-registered ``(time, band, y, x)`` pixel arrays.

    Parameters
    ----------
    pixels : sequence of dask.array.Array
        One array per modality of ``plan.modalities``, in that order: physical units, NaN for
        no data, on ``plan.geobox``, the same dates (already paired) and shape but for bands.
    plan : FusedPlan
    salt : str, optional
        As for :func:`xterrafm.embedding.graph.embed_dask`.

    Returns
    -------
    dask.array.Array
        float32 ``(time, embed_dim, n_out_y, n_out_x)``, one block per output block.
    """
    if len(pixels) != len(plan.modalities):
        raise ValueError(f"expected {len(plan.modalities)} pixel arrays ({plan.modalities}); "
                         f"got {len(pixels)}")
    for arr, m, c in zip(pixels, plan.modalities, plan.channels, strict=True):
        if arr.ndim != 4 or arr.shape[1] != c:
            raise ValueError(f"{m}: expected (time, {c}, y, x) pixels; got shape {arr.shape}")
    first = pixels[0]
    parts = [p if p.dtype == np.float32 else p.astype(np.float32) for p in pixels]
    parts = [parts[0]] + [p.rechunk({0: first.chunks[0], 2: first.chunks[2], 3: first.chunks[3]})
                          for p in parts[1:]]
    stack = da.concatenate(parts, axis=1)
    blocks = reblock(stack, plan, salt)
    chunks = (blocks.chunks[0], (plan.embed_dim,), plan.y.out_chunks(plan.cells[0]),
              plan.x.out_chunks(plan.cells[1]))
    token = dask.base.tokenize(blocks.name, plan.spec, plan.modalities, plan.y, plan.x,
                               plan.settings.min_valid)
    annotate = (dask.annotate(resources=plan.resources) if plan.resources
                else contextlib.nullcontext())
    with annotate:
        return da.map_blocks(_fused_task, blocks, dtype=np.float32, chunks=chunks,
                             meta=np.empty((0, 0, 0, 0), dtype=np.float32),
                             name=f"terrafm-fused-{token}", spec=plan.spec,
                             modalities=plan.modalities, channels=plan.channels, y=plan.y,
                             x=plan.x, min_valid=plan.settings.min_valid)
