"""A second modality for ``xterrafm embed``: ``--fuse-with SOURCE --fuse-modality s1``.

The job's SOURCE gives the anchor cubes (one per CRS, see :mod:`xterrafm.batch.sources`);
``--fuse-with`` names the second modality's SOURCE, in the same forms. A STAC SOURCE is read
with ``load_stac(..., like=anchor)``, so it lands on each anchor cube's grid; a GeoTIFF or Zarr
SOURCE must already be on that grid (the embedding refuses it otherwise, naming the grids).
Each anchor cube and its partner become one ``{modality: cube}`` mapping, embedded through the
model's fusion (:mod:`xterrafm.embedding.fused_api`); the dates are paired with
``--pair-tolerance`` (an embedding setting). Fusion needs weights pretrained with it: the
published checkpoints are refused.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xterrafm.bands import MODALITIES
from xterrafm.batch.sources import (
    SourceSelection,
    classify_sources,
    modality_from_collection,
    open_cubes,
    read_chunks,
    read_stac_items,
)
from xterrafm.errors import SourceError, UsageError

__all__ = ["FuseSelection", "add_fuse_arguments", "attach_fused", "fuse_selection_from_args"]


@dataclass(frozen=True)
class FuseSelection:
    """The second modality of a fused job.

    Attributes
    ----------
    sources : tuple of str
        Its SOURCE hrefs (STAC API URL, catalog/ItemCollection, GeoTIFFs or a Zarr cube).
    modality : str, optional
        Its modality; default from ``collection``.
    collection : str, optional
        STAC collection id (needed for a STAC API SOURCE).
    """

    sources: tuple[str, ...]
    modality: str | None = None
    collection: str | None = None


def add_fuse_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fusion`` option group to the ``embed`` parser."""
    group = parser.add_argument_group(
        "fusion (a second, co-registered modality; needs weights pretrained with fusion)")
    group.add_argument("--fuse-with", nargs="+", default=None, metavar="SOURCE",
                       help="SOURCE of a second modality (same forms as SOURCE), fused with "
                       "the first window by window; STAC sources are read on SOURCE's grid")
    group.add_argument("--fuse-modality", default=None, choices=sorted(MODALITIES),
                       help="modality of --fuse-with (default: from --fuse-collection)")
    group.add_argument("--fuse-collection", default=None, metavar="ID",
                       help="STAC collection of --fuse-with (required for a STAC API URL)")


def fuse_selection_from_args(args: argparse.Namespace) -> FuseSelection | None:
    """The :class:`FuseSelection` of parsed options, or None without ``--fuse-with``.

    Raises
    ------
    UsageError
        ``--fuse-modality``/``--fuse-collection`` without ``--fuse-with``, an unusable SOURCE,
        no way to tell its modality, or the same modality as SOURCE's.
    """
    sources = getattr(args, "fuse_with", None)
    if not sources:
        if getattr(args, "fuse_modality", None) or getattr(args, "fuse_collection", None):
            raise UsageError("--fuse-modality and --fuse-collection need --fuse-with SOURCE")
        return None
    classify_sources(sources)
    modality = args.fuse_modality or modality_from_collection(args.fuse_collection)
    if modality is None:
        raise UsageError("--fuse-with needs --fuse-modality (s1, s2_l1c or s2_l2a) unless "
                         "--fuse-collection names it")
    if modality == getattr(args, "modality", None):
        raise UsageError(f"--fuse-modality {modality} is SOURCE's modality too; fusion needs "
                         "two different modalities")
    return FuseSelection(tuple(sources), modality, args.fuse_collection)


def attach_fused(cubes: dict[str, Any], inputs: SourceSelection, fuse: FuseSelection,
                 out: Path) -> dict[str, dict[str, Any]]:
    """Pair every anchor cube with the second modality on its grid.

    Parameters
    ----------
    cubes : dict
        ``{crs: anchor cube}`` from :func:`~xterrafm.batch.sources.open_cubes`.
    inputs : SourceSelection
        The job's selection (bbox, datetime, chunk are shared with the second modality).
    fuse : FuseSelection
    out : Path
        The job's output store.

    Returns
    -------
    dict
        ``{crs: {anchor modality: cube, fuse modality: cube}}``.

    Raises
    ------
    SourceError
        The second SOURCE has no items or cannot be read.
    """
    from xterrafm.io.stac import load_stac

    spec = classify_sources(fuse.sources)
    sel = replace(inputs, sources=fuse.sources, collection=fuse.collection,
                  modality=fuse.modality)
    items, origins = None, {}
    if spec.kind in ("stac-api", "stac-static"):
        items, origins = read_stac_items(sel, spec.hrefs[0], spec.kind)
        if not items:
            raise SourceError(f"--fuse-with {spec.hrefs[0]} selects no items")
    else:
        others = open_cubes(sel, out)
    paired: dict[str, dict[str, Any]] = {}
    for crs, cube in cubes.items():
        anchor = str(cube.attrs.get("modality") or inputs.modality)
        if anchor == fuse.modality:
            raise UsageError(f"SOURCE and --fuse-with are both {anchor}; fusion needs two "
                             "different modalities")
        if items is not None:
            chunks = read_chunks(inputs.chunk) or {"y": cube.data.chunksize[2],
                                                    "x": cube.data.chunksize[3]}
            other = load_stac(items, modality=fuse.modality, like=cube, chunks=chunks)
            other.attrs["source_hrefs"] = sorted({origins[it.id] for it in items})
        else:
            other = others.get(crs)
            if other is None:
                raise SourceError(f"--fuse-with has no data in {crs} (it covers "
                                  f"{sorted(others)}); use a STAC SOURCE to read it on "
                                  "SOURCE's grid")
        paired[crs] = {anchor: cube, fuse.modality: other}
    return paired
