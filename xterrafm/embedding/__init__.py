"""Embedding lazy cubes with TerraFM: window grids, block functions, the dask graph, Zarr output.

Public entry points: :func:`embed` (lazy ``xr.DataArray`` of embeddings),
:func:`embed_to_zarr` (resumable Zarr store, returns an :class:`EmbedSummary`) and
:func:`store_status` (how far a store got). The ``.terrafm`` accessor
(:mod:`xterrafm.accessor`) is a thin facade over them.
"""

from xterrafm.embedding.api import describe_model, embed
from xterrafm.embedding.scheduling import compute, keep_annotations
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows, output_geobox
from xterrafm.embedding.zarr_output import (
    EmbedSummary,
    FingerprintMismatchError,
    StoreStatus,
    embed_to_zarr,
    fingerprint,
    pending_blocks,
    prepare_store,
    store_status,
    write_blocks,
)

__all__ = [
    "AxisWindows",
    "EmbedSummary",
    "FingerprintMismatchError",
    "ModelSpec",
    "StoreStatus",
    "compute",
    "describe_model",
    "embed",
    "embed_to_zarr",
    "fingerprint",
    "keep_annotations",
    "output_geobox",
    "pending_blocks",
    "prepare_store",
    "store_status",
    "write_blocks",
]
