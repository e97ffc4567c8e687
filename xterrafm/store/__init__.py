"""Resumable Zarr stores of embeddings: layout, writing, reading, status.

Modules: :mod:`~xterrafm.store.layout` (where things live in a store, the fingerprint),
:mod:`~xterrafm.store.markers` (completion markers that vouch for intact chunks),
:mod:`~xterrafm.store.encoding` (float32, float16 or int8 storage),
:mod:`~xterrafm.store.template` (:func:`prepare_store`), :mod:`~xterrafm.store.conventions`
(geo-embeddings convention attrs), :mod:`~xterrafm.store.stac_item` (the STAC Item of a
store), :mod:`~xterrafm.store.counts` (the counts every summary reports),
:mod:`~xterrafm.store.status` (how far a store got, read from the store alone),
:mod:`~xterrafm.store.write` (:func:`embed_to_zarr`: the template, then the blocks in waves)
and :mod:`~xterrafm.store.read` (:func:`open_embeddings`). Names are imported from their
modules on first use.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "EmbedSummary": "counts",
    "StoreCounts": "counts",
    "Tally": "counts",
    "StoreEncoding": "encoding",
    "open_embeddings": "read",
    "StoreStatus": "status",
    "store_status": "status",
    "prepare_store": "template",
    "embed_to_zarr": "write",
    "pending_blocks": "write",
    "write_blocks": "write",
    "write_plan": "write",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
