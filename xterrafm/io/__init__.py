"""Readers and writers of xterrafm cubes: STAC, GeoTIFF, Zarr, and common training grids.

Every reader returns the cube contract: a lazy, dask-backed ``xr.DataArray`` with dims
``(time, band, y, x)``, bands in TerraFM order, float32 physical units (Sentinel-2 reflectance,
Sentinel-1 linear power), NaN nodata, the CRS in a ``spatial_ref`` coordinate (``cube.rio.crs``
and ``cube.odc.geobox`` work) and ``attrs["modality"]`` / ``attrs["item_ids"]``.
"""

from __future__ import annotations

import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
import rioxarray  # noqa: F401  (registers the .rio accessor)

from xterrafm.io.geotiff import open_geotiff
from xterrafm.io.grid import (
    build_training_cube,
    open_training_cube,
    training_modality,
    write_training_cube,
)
from xterrafm.io.retry import AssetReadError, RetryPolicy
from xterrafm.io.stac import BandNotFoundError, load_stac, resolve_items
from xterrafm.io.zarr_store import open_zarr_cube, write_zarr_cube

__all__ = [
    "AssetReadError",
    "BandNotFoundError",
    "RetryPolicy",
    "build_training_cube",
    "load_stac",
    "open_geotiff",
    "open_training_cube",
    "open_zarr_cube",
    "resolve_items",
    "training_modality",
    "write_training_cube",
    "write_zarr_cube",
]
