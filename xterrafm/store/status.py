"""How far an embedding store got, read from the store alone: :func:`store_status`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.store.counts import StoreCounts, Tally
from xterrafm.store.layout import (
    META_DIR,
    VAR,
    read_fingerprint,
    region_name,
    store_fs,
    store_path,
)
from xterrafm.store.markers import check_markers, read_markers

__all__ = ["StoreStatus", "chunk_regions", "store_status", "store_totals"]


@dataclass(frozen=True)
class StoreStatus:
    """How far an embedding store got.

    Attributes
    ----------
    store : str
        The store (path or URL).
    fingerprint : dict or None
        The settings the store was written with; None when the path holds no xterrafm
        embedding store (or not yet its template).
    template_complete : bool
        Metadata and coordinates are written; blocks can be written or resumed.
    counts : StoreCounts
        ``found``: the blocks with a completion marker whose chunks are intact, and their
        cells; ``written`` is empty (the status belongs to no run).
    damaged : dict
        Marker name -> why its block is not counted: a chunk it vouches for is missing, torn
        or (``verify="checksum"``) altered. The next run writes these blocks again.
    """

    store: str
    fingerprint: dict | None
    template_complete: bool
    counts: StoreCounts
    damaged: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether the template and every block are written, with intact chunks."""
        return self.template_complete and self.counts.complete

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, with the derived counts."""
        return {"store": self.store, "fingerprint": self.fingerprint,
                "template_complete": self.template_complete, "complete": self.complete,
                "counts": self.counts.to_dict(), "damaged": dict(self.damaged)}


def _array_dims(arr: Any) -> list[str] | None:
    names = getattr(arr.metadata, "dimension_names", None)  # Zarr v3
    if names is None:
        names = arr.attrs.get("_ARRAY_DIMENSIONS")  # Zarr v2, as xarray writes it
    return list(names) if names else None


def _open(store: str) -> Any:
    with import_gate():
        import zarr

    try:
        return zarr.open_array(store=str(store), path=VAR, mode="r")
    except Exception:  # noqa: BLE001 - no template (yet), or not an embedding store
        return None


def store_totals(store: str) -> tuple[int, int]:
    """``(blocks, cells)`` of a store's ``embeddings`` array; ``(0, 0)`` without a template."""
    arr = _open(store)
    if arr is None:
        return 0, 0
    blocks = math.prod(-(-n // c) for n, c in zip(arr.shape, arr.chunks, strict=True))
    dims = _array_dims(arr) or []
    axis = dims.index("embedding") if "embedding" in dims else arr.ndim - 3
    return blocks, math.prod(n for i, n in enumerate(arr.shape) if i != axis)


def chunk_regions(store: str) -> list[str]:
    """Marker names of every chunk of a store's ``embeddings`` (the blocks it must hold)."""
    with import_gate():
        import numpy as np

    arr = _open(store)
    dims = _array_dims(arr) if arr is not None else None
    if not dims:
        return []
    grid = [-(-n // c) for n, c in zip(arr.shape, arr.chunks, strict=True)]
    out = []
    for idx in np.ndindex(*grid):
        region = [(int(i) * c, min((int(i) + 1) * c, n))
                  for i, c, n in zip(idx, arr.chunks, arr.shape, strict=True)]
        out.append(region_name(region, tuple(dims)))
    return out


def store_status(store: str | os.PathLike, *, verify: str = "size") -> StoreStatus:
    """Read how far the embedding store ``store`` got: blocks done, cells embedded and empty.

    A block counts as done only when its marker's chunks are intact (see
    :func:`~xterrafm.store.markers.check_markers`); the others are listed in ``damaged``.

    Parameters
    ----------
    store : str or path
        Local path or fsspec URL of a store written by :func:`xterrafm.embed_to_zarr` (or the
        group of one CRS inside a multi-CRS store).
    verify : {"size", "checksum"}
        Check chunk sizes (one listing, default) or also their CRC-32 (reads the store).

    Returns
    -------
    StoreStatus
        All counts are 0 for a store whose template is not written yet.

    Raises
    ------
    FileNotFoundError
        Nothing exists at ``store``.
    """
    store = str(store)
    fs, root = store_fs(store)
    if not fs.exists(root):
        raise FileNotFoundError(f"no embedding store at {store}")
    blocks, cells = store_totals(store)
    names = chunk_regions(store)
    check = check_markers(fs, root, read_markers(fs, root, names), verify=verify)
    found = Tally(len(check.trusted),
                  sum(int(m.get("cells_embedded", 0)) for m in check.trusted.values()),
                  sum(int(m.get("cells_empty", 0)) for m in check.trusted.values()))
    counts = StoreCounts(blocks_total=blocks, cells_total=cells, found=found)
    return StoreStatus(store=store, fingerprint=read_fingerprint(store),
                       template_complete=fs.exists(store_path(root, META_DIR, "template.done")),
                       counts=counts, damaged=check.damaged)
