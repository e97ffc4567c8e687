"""Readers and writers of xterrafm cubes: STAC, GeoTIFF, Zarr, and common training grids.

Every reader returns the cube contract: a lazy, dask-backed ``xr.DataArray`` with dims
``(time, band, y, x)``, bands in TerraFM order, float32 physical units (Sentinel-2 reflectance,
Sentinel-1 linear power), NaN nodata, the CRS in a ``spatial_ref`` coordinate (``cube.rio.crs``
and ``cube.odc.geobox`` work) and ``attrs["modality"]`` / ``attrs["item_ids"]``.

Names are imported from their modules on first use.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "AssetReadError": "xterrafm.errors",
    "BandNotFoundError": "xterrafm.errors",
    "RetryPolicy": "retry",
    "build_training_cube": "grid",
    "load_stac": "stac",
    "load_stac_per_crs": "stac",
    "open_geotiff": "geotiff",
    "open_training_cube": "grid",
    "open_zarr_cube": "zarr_store",
    "resolve_items": "stac_items",
    "training_modality": "grid",
    "write_training_cube": "grid",
    "write_zarr_cube": "zarr_store",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
