"""Resumable Zarr stores of embeddings: layout, writing, status.

Modules: :mod:`~xterrafm.store.layout` (where things live in a store, the fingerprint and the
completion markers), :mod:`~xterrafm.store.counts` (the counts every summary reports),
:mod:`~xterrafm.store.status` (how far a store got, read from the store alone) and
:mod:`~xterrafm.store.write` (:func:`embed_to_zarr`: the template, then the blocks in waves).
Names are imported from their modules on first use.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "EmbedSummary": "counts",
    "StoreCounts": "counts",
    "Tally": "counts",
    "StoreStatus": "status",
    "store_status": "status",
    "embed_to_zarr": "write",
    "pending_blocks": "write",
    "prepare_store": "write",
    "write_blocks": "write",
    "write_plan": "write",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
