"""Embedding lazy cubes with TerraFM: window grids, block functions, the dask graph, Zarr output.

Public entry points: :func:`embed` (lazy ``xr.DataArray`` of embeddings),
:func:`embed_to_zarr` (resumable Zarr store, returns an :class:`EmbedSummary`) and
:func:`store_status` (how far a store got). The ``.terrafm`` accessor
(:mod:`xterrafm.accessor`) is a thin facade over them.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "AxisWindows": "windows",
    "EmbedSummary": "zarr_output",
    "FingerprintMismatchError": "zarr_output",
    "ModelSpec": "spec",
    "StoreStatus": "zarr_output",
    "compute": "scheduling",
    "describe_model": "api",
    "embed": "api",
    "embed_to_zarr": "zarr_output",
    "fingerprint": "zarr_output",
    "keep_annotations": "scheduling",
    "output_geobox": "windows",
    "pending_blocks": "zarr_output",
    "prepare_store": "zarr_output",
    "store_status": "zarr_output",
    "write_blocks": "zarr_output",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
