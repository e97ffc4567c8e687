"""Land-cover probes of embeddings with a spatial train/test split, reported as a table.

This is what ``python -m xterrafm eval`` runs: embed a scene (by default the synthetic scene,
or read an embedding Zarr store), label every embedding pixel with the majority land-cover
class of its footprint, split train/test by a checkerboard of spatial blocks (neighbours share
pixels and context, so a random split would leak), then score kNN for several ``k`` and a
linear probe.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xterrafm._imports import import_gate
from xterrafm.eval.inputs import LabelledSamples, labelled_samples
from xterrafm.eval.knn_probe import knn
from xterrafm.eval.linear import fit_linear_probe
from xterrafm.eval.metrics import accuracy, macro_accuracy
from xterrafm.eval.splits import spatial_block_split, subsample_training_set

with import_gate():
    import numpy as np
    import xarray as xr

__all__ = [
    "EvalRow",
    "embed_cube",
    "evaluate_samples",
    "format_table",
    "read_scene_cube",
    "synthetic_scene_samples",
]

if TYPE_CHECKING:
    from xterrafm.datasets.scene import SyntheticScene

log = logging.getLogger("xterrafm.eval")


@dataclass(frozen=True)
class EvalRow:
    """One line of the report: a method, its setting and its score on the test set."""

    method: str
    setting: str
    metric: str
    value: float
    n_train: int
    n_test: int


def evaluate_samples(
    samples: LabelledSamples,
    *,
    ks: Sequence[int] = (1, 5, 20),
    temperature: float = 0.07,
    block: int = 4,
    train_fraction: float = 1.0,
    linear: bool = True,
    seed: int = 0,
    class_weight: str | None = None,
) -> list[EvalRow]:
    """Score kNN (each ``k``) and a linear probe on a spatial checkerboard split.

    Parameters
    ----------
    samples : LabelledSamples
        Embedding rows with labels and grid positions (`labelled_samples`).
    ks : sequence of int
        Neighbour counts to report.
    temperature : float
        kNN vote temperature.
    block : int
        Side of the checkerboard cells in embedding-grid cells.
    train_fraction : float
        Stratified share of the training half used (seeded); 0.01 is the paper's 1 % protocol.
    linear : bool
        Also fit and score a linear probe.
    seed : int
        Seed of the training subsample and of the linear probe.
    class_weight : {None, "balanced"}
        ``None``: probes fitted to the labels as they come, scored by top-1 accuracy.
        ``"balanced"``: probes fitted as if every class were equally frequent
        (:mod:`xterrafm.eval.class_balance`) and scored by macro-accuracy (mean per-class
        recall), for long-tailed labels whose rare classes a plain probe gives up.

    Returns
    -------
    list of EvalRow
    """
    train = spatial_block_split(samples.rows, samples.cols, block=block)
    test = ~train
    if train.sum() == 0 or test.sum() == 0:
        raise ValueError(
            f"the spatial split with block={block} leaves an empty train or test set "
            f"({int(train.sum())} / {int(test.sum())} samples); use a smaller --block"
        )
    xtr, ytr = samples.x[train], samples.y[train]
    xte, yte = samples.x[test], samples.y[test]
    if train_fraction != 1.0:
        keep = subsample_training_set(ytr, train_fraction, seed=seed)
        xtr, ytr = xtr[keep], ytr[keep]
    metric_name, score = (("top-1 acc", accuracy) if class_weight is None
                          else ("macro acc", macro_accuracy))
    fit_note = "" if class_weight is None else f", {class_weight}"
    rows = []
    for k in ks:
        pred = knn(xtr, ytr, xte, k=k, temperature=temperature, class_weight=class_weight)
        rows.append(EvalRow("knn", f"k={k} T={temperature:g}{fit_note}", metric_name,
                            score(yte, pred), len(ytr), len(yte)))
    if linear:
        probe = fit_linear_probe(xtr, ytr, seed=seed, class_weight=class_weight)
        rows.append(EvalRow("linear", f"AdamW 100 ep{fit_note}", metric_name,
                            score(yte, probe.predict(xte)), len(ytr), len(yte)))
    # the majority class of the training set, a floor every method should beat
    values, counts = np.unique(ytr, return_counts=True)
    rows.append(EvalRow("majority class", str(values[np.argmax(counts)]), metric_name,
                        score(yte, np.full(len(yte), values[np.argmax(counts)])),
                        len(ytr), len(yte)))
    return rows


def format_table(rows: Sequence[EvalRow], title: str | None = None) -> str:
    """A fixed-width text table of report rows."""
    header = ("method", "setting", "metric", "value", "train", "test")
    body = [(r.method, r.setting, r.metric, f"{r.value:.4f}", str(r.n_train), str(r.n_test))
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [title] if title else []
    out += [line(header), line(["-" * w for w in widths]), *(line(b) for b in body)]
    return "\n".join(out)


def read_scene_cube(scene: SyntheticScene, modality: str = "s2_l2a") -> xr.DataArray:
    """Open one modality of a synthetic scene on its 10 m grid, with :func:`xterrafm.io.load_stac`.

    The scene's STAC ItemCollection of that modality is read like any other: Sentinel-2
    digital numbers become reflectance (the scene's processing baseline carries the +1000
    offset), nodata becomes NaN, Sentinel-1 stays linear power. 20 m and 60 m bands are
    resampled to 10 m with ``nearest`` (they share the grid's origin, so each coarse pixel
    covers whole 10 m pixels).

    Parameters
    ----------
    scene : xterrafm.datasets.SyntheticScene
    modality : str
        ``"s2_l2a"``, ``"s2_l1c"`` or ``"s1"``.

    Returns
    -------
    xarray.DataArray of float32, dims (time, band, y, x)
        Lazy (dask), on ``scene.geobox``, following the io contract (CRS in ``spatial_ref``,
        ``attrs["modality"]``).
    """
    from xterrafm.io.stac import load_stac

    if modality not in scene.item_collections:
        raise ValueError(f"the scene has no {modality!r} items; it has "
                         f"{sorted(scene.item_collections)}")
    return load_stac(scene.item_collections[modality], modality=modality, geobox=scene.geobox,
                     resampling="nearest")


def embed_cube(
    cube: xr.DataArray,
    *,
    model: str = "terrafm-b",
    weights: str | None = None,
    level: str = "patch",
    tile: int = 224,
    device: str = "auto",
) -> xr.DataArray:
    """Embed a (time, band, y, x) cube with the ``.terrafm`` accessor (lazy result).

    Returns
    -------
    xarray.DataArray
        Dims (time, embedding, y, x) at window or patch centres, with CRS and attrs.
    """
    import xterrafm.accessor  # noqa: F401  (registers .terrafm)

    return cube.terrafm.embed(model=model, weights=weights, level=level, tile=tile,
                              device=device)


def synthetic_scene_samples(
    workdir: str | Path,
    *,
    size: int = 448,
    modality: str = "s2_l2a",
    model: str = "terrafm-b",
    weights: str | None = None,
    level: str = "patch",
    tile: int = 224,
    seed: int = 0,
) -> LabelledSamples:
    """Write the synthetic scene to ``workdir/synthetic-scene`` (replacing an earlier one there),
    embed it and label the embeddings with its land-cover map."""
    from xterrafm.datasets.scene import make_synthetic_scene

    # a scene of its own inside workdir: replacing it never touches the user's other files
    scene = make_synthetic_scene(Path(workdir) / "synthetic-scene", seed=seed, width=size,
                                 height=size, modalities=(modality,), overwrite=True)
    cube = read_scene_cube(scene, modality)
    emb = embed_cube(cube, model=model, weights=weights, level=level, tile=tile)
    return labelled_samples(emb, scene.landcover_path)
