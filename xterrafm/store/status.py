"""How far an embedding store got, read from the store alone: :func:`store_status`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.store.counts import StoreCounts, Tally
from xterrafm.store.layout import (
    META_DIR,
    VAR,
    marker_paths,
    read_fingerprint,
    store_fs,
    store_path,
)

__all__ = ["StoreStatus", "done_tally", "store_status", "store_totals"]


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
        ``found``: the blocks with a completion marker and their cells; ``written`` is empty
        (the status belongs to no run).
    """

    store: str
    fingerprint: dict | None
    template_complete: bool
    counts: StoreCounts

    @property
    def complete(self) -> bool:
        """Whether the template and every block are written."""
        return self.template_complete and self.counts.complete

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, with the derived counts."""
        return {"store": self.store, "fingerprint": self.fingerprint,
                "template_complete": self.template_complete, "complete": self.complete,
                "counts": self.counts.to_dict()}


def _array_dims(arr: Any) -> list[str] | None:
    names = getattr(arr.metadata, "dimension_names", None)  # Zarr v3
    if names is None:
        names = arr.attrs.get("_ARRAY_DIMENSIONS")  # Zarr v2, as xarray writes it
    return list(names) if names else None


def store_totals(store: str) -> tuple[int, int]:
    """``(blocks, cells)`` of a store's ``embeddings`` array; ``(0, 0)`` without a template."""
    with import_gate():
        import zarr

    try:
        arr = zarr.open_array(store=str(store), path=VAR, mode="r")
    except Exception:  # noqa: BLE001 - no template (yet), or not an embedding store
        return 0, 0
    blocks = math.prod(-(-n // c) for n, c in zip(arr.shape, arr.chunks, strict=True))
    dims = _array_dims(arr) or []
    axis = dims.index("embedding") if "embedding" in dims else arr.ndim - 3
    return blocks, math.prod(n for i, n in enumerate(arr.shape) if i != axis)


def done_tally(fs: Any, root: str, names: set[str] | None = None) -> Tally:
    """The blocks with a completion marker and their cells (only ``names`` when given)."""
    paths = marker_paths(fs, root)
    if names is not None:
        paths = [p for p in paths if p.rsplit("/", 1)[-1][:-5] in names]
    embedded = empty = 0
    for _, data in (fs.cat(paths).items() if paths else ()):
        counts = json.loads(data)
        embedded += int(counts.get("cells_embedded", 0))
        empty += int(counts.get("cells_empty", 0))
    return Tally(len(paths), embedded, empty)


def store_status(store: str | os.PathLike) -> StoreStatus:
    """Read how far the embedding store ``store`` got: blocks done, cells embedded and empty.

    Parameters
    ----------
    store : str or path
        Local path or fsspec URL of a store written by :func:`xterrafm.embed_to_zarr` (or the
        group of one CRS inside a multi-CRS store).

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
    counts = StoreCounts(blocks_total=blocks, cells_total=cells, found=done_tally(fs, root))
    return StoreStatus(store=store, fingerprint=read_fingerprint(store),
                       template_complete=fs.exists(store_path(root, META_DIR, "template.done")),
                       counts=counts)
