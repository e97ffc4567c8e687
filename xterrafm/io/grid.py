"""Multi-modal training cubes: S1, S2 L1C, S2 L2A and land cover on one common grid.

:func:`build_training_cube` puts every modality on one odc-geo :class:`~odc.geo.geobox.GeoBox`
(lazily: sources are loaded directly onto it, cubes on another grid are reprojected with
:func:`odc.geo.xr.xr_reproject`) and :func:`write_training_cube` saves the result to Zarr.

Layout of a training cube (``xr.Dataset``; the pretraining data loader reads this)
-----------------------------------------------------------------------------------
Shared spatial dims ``y``, ``x`` (pixel centres in CRS units) and one ``spatial_ref``
coordinate holding the CRS (``ds.rio.crs``, ``ds.odc.geobox``). Per modality ``m`` present:

* ``ds[m]``: float32 ``(m_time, m_band, y, x)`` in physical units (reflectance / linear
  power), NaN nodata; e.g. ``ds["s2_l2a"]`` has dims ``("s2_l2a_time", "s2_l2a_band", "y", "x")``.
  Time and band dims are per modality because the modalities have different band sets and, in
  real data, different acquisition dates. Coordinates ``m_time`` (datetime64[ns]) and
  ``m_band`` (canonical band names in TerraFM order). Variable attrs are the reader's attrs
  (``modality``, ``units``, ``item_ids``, ...).
* ``ds["landcover"]``: uint8 ``(y, x)`` ESA WorldCover classes (10, 20, ..., 100), 0 = nodata,
  resampled with nearest.

Dataset attrs: ``xterrafm_layout = "training-cube-v1"``, ``modalities`` (list),
``has_landcover`` (0/1). :func:`training_modality` returns one modality as a standard cube
``(time, band, y, x)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import check_modality
from xterrafm.errors import InputError
from xterrafm.io.stac import DEFAULT_CHUNK_PX, load_stac
from xterrafm.io.zarr_store import open_zarr_cube, write_zarr_cube

with import_gate():
    import numpy as np
    import rioxarray
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords, xr_reproject

__all__ = [
    "LAYOUT",
    "build_training_cube",
    "open_training_cube",
    "training_modality",
    "write_training_cube",
]

#: Value of ``attrs["xterrafm_layout"]`` of training cubes written by this module.
LAYOUT = "training-cube-v1"
_MODALITY_ORDER = ("s1", "s2_l1c", "s2_l2a")


def _on_grid(cube: xr.DataArray, geobox: GeoBox, resampling: str, chunk_px: int) -> xr.DataArray:
    """``cube`` on ``geobox``: unchanged when already there, else lazily reprojected."""
    if cube.odc.geobox == geobox:
        return cube
    attrs = dict(cube.attrs)
    cube = cube.copy()
    cube.attrs["nodata"] = np.nan
    out = xr_reproject(cube, geobox, resampling=resampling, dst_nodata=np.nan)
    out = out.astype("float32").chunk({"y": chunk_px, "x": chunk_px})
    out.attrs = attrs | {"resampling": f"{attrs.get('resampling', '')}+grid:{resampling}"}
    return out


def _modality_cube(m: str, src: Any, geobox: GeoBox, resampling: str,
                   stac_kwargs: Mapping[str, Any], chunk_px: int) -> xr.DataArray:
    if isinstance(src, xr.DataArray):
        got = src.attrs.get("modality")
        if got is not None and check_modality(got) != m:
            raise ValueError(f"the cube passed as {m!r} has attrs['modality'] = {got!r}")
        cube = src
    else:  # any load_stac source, loaded directly on the common grid
        cube = load_stac(src, modality=m, geobox=geobox, resampling=resampling,
                         chunks={"y": chunk_px, "x": chunk_px}, **dict(stac_kwargs))
    if tuple(cube.dims) != ("time", "band", "y", "x"):
        raise ValueError(f"{m!r} cube must have dims (time, band, y, x), got {cube.dims}")
    return _on_grid(cube, geobox, resampling, chunk_px)


def _landcover(src: Any, geobox: GeoBox, chunk_px: int) -> xr.DataArray:
    if isinstance(src, (str, os.PathLike)):
        da = rioxarray.open_rasterio(os.fspath(src), chunks={"y": chunk_px, "x": chunk_px},
                                     masked=False, lock=False)
        if da.sizes.get("band", 1) != 1:
            raise ValueError(f"land-cover file {os.fspath(src)!r} must have one band")
        da = da.isel(band=0, drop=True)
    elif isinstance(src, xr.DataArray):
        da = src.squeeze(drop=True) if "band" in src.dims else src
    else:
        raise TypeError(f"landcover must be a path or an xarray DataArray, got {type(src)!r}")
    if tuple(da.dims) != ("y", "x"):
        raise ValueError(f"land cover must have dims (y, x), got {da.dims}")
    da = da.fillna(0).astype("uint8") if da.dtype.kind == "f" else da.astype("uint8")
    da.attrs = {"nodata": 0}
    if da.odc.geobox != geobox:
        da = xr_reproject(da, geobox, resampling="nearest", dst_nodata=0)
    da = da.astype("uint8").chunk({"y": chunk_px, "x": chunk_px})
    da.attrs = {"classes": "ESA WorldCover", "nodata": 0, "resampling": "nearest"}
    return da


def build_training_cube(
    geobox: GeoBox,
    *,
    s1: Any = None,
    s2_l1c: Any = None,
    s2_l2a: Any = None,
    landcover: Any = None,
    resampling: str = "bilinear",
    chunk_px: int = DEFAULT_CHUNK_PX,
    stac_kwargs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Put S1, S2 L1C, S2 L2A and a land-cover map on one grid as a lazy training Dataset.

    Parameters
    ----------
    geobox : odc.geo.geobox.GeoBox
        The common grid (e.g. ``scene.geobox`` or ``cube.odc.geobox`` of the S2 L2A cube).
    s1, s2_l1c, s2_l2a : xarray.DataArray or STAC source, optional
        A cube ``(time, band, y, x)`` from any xterrafm reader (reprojected when on another
        grid), or anything :func:`~xterrafm.io.load_stac` accepts (loaded on ``geobox``).
        At least one modality or the land cover is required.
    landcover : path or xarray.DataArray, optional
        ESA WorldCover class map; resampled with nearest, stored as uint8 (0 = nodata).
    resampling : str
        Resampling of the image modalities onto ``geobox`` (default bilinear).
    chunk_px : int
        y/x chunk size (default 1120 = 5 x 224).
    stac_kwargs : mapping, optional
        Extra :func:`~xterrafm.io.load_stac` arguments for STAC sources (e.g. ``collections``).

    Returns
    -------
    xarray.Dataset
        The layout of the module docstring; nothing is computed.
    """
    sources = {"s1": s1, "s2_l1c": s2_l1c, "s2_l2a": s2_l2a}
    if all(v is None for v in sources.values()) and landcover is None:
        raise ValueError("build_training_cube needs at least one of s1, s2_l1c, s2_l2a, landcover")
    data_vars: dict[str, xr.DataArray] = {}
    for m in _MODALITY_ORDER:
        if sources[m] is None:
            continue
        cube = _modality_cube(m, sources[m], geobox, resampling, stac_kwargs or {}, chunk_px)
        cube = cube.rename({"time": f"{m}_time", "band": f"{m}_band"})
        data_vars[m] = cube.drop_vars("spatial_ref", errors="ignore")
    if landcover is not None:
        data_vars["landcover"] = _landcover(landcover, geobox, chunk_px).drop_vars(
            "spatial_ref", errors="ignore")
    ds = xr.Dataset(data_vars)
    # One set of grid coordinates, exactly those of the geobox.
    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    ds = ds.assign_coords({k: v for k, v in coords.items()})
    for v in ds.data_vars:
        ds[v].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs = {
        "xterrafm_layout": LAYOUT,
        "modalities": [m for m in _MODALITY_ORDER if m in data_vars],
        "has_landcover": int("landcover" in data_vars),
    }
    return ds


def training_modality(ds: xr.Dataset, modality: str) -> xr.DataArray:
    """One modality of a training cube as a standard ``(time, band, y, x)`` cube."""
    m = check_modality(modality)
    if m not in ds.data_vars:
        raise KeyError(f"modality {m!r} not in the training cube; it has "
                       f"{[v for v in ds.data_vars if v != 'landcover']}")
    return ds[m].rename({f"{m}_time": "time", f"{m}_band": "band"})


def write_training_cube(ds: xr.Dataset, store: Any, *, mode: str = "w-",
                        zarr_format: int = 3, **kwargs: Any) -> Any:
    """Save a training cube to Zarr (see :func:`~xterrafm.io.write_zarr_cube`; ``"w-"`` default)."""
    if ds.attrs.get("xterrafm_layout") != LAYOUT:
        raise ValueError("not a training cube built by build_training_cube (xterrafm_layout "
                         f"attribute is {ds.attrs.get('xterrafm_layout')!r})")
    return write_zarr_cube(ds, store, mode=mode, zarr_format=zarr_format, **kwargs)


def open_training_cube(source: Any, *, chunks: Mapping[str, int] | str | None = "auto",
                       **kwargs: Any) -> xr.Dataset:
    """Open a training cube lazily, with its CRS: what pretraining and evaluation read.

    A training cube is a Dataset of modality variables (``s1``, ``s2_l1c``, ``s2_l2a``) and
    optionally ``landcover`` on one grid (layout in the module docstring), as
    :func:`write_training_cube` (or :func:`~xterrafm.io.write_zarr_cube`) writes it.

    Parameters
    ----------
    source : path, zarr store or xr.Dataset
        A Zarr directory or URL, a zarr store object, or a Dataset (returned as is after the
        layout check).
    chunks : dict, "auto" or None
        Dask chunks (``"auto"``: the stored chunks); ``None`` opens without dask, so that window
        reads touch only the chunks they need (what :class:`xterrafm.data.TrainingCube` uses).
    **kwargs
        Passed to :func:`xarray.open_zarr`.

    Raises
    ------
    FileNotFoundError
        No such path.
    InputError
        The path is not a Zarr group, or the Dataset records another layout than
        ``xterrafm_layout = "training-cube-v1"`` (a missing attribute is accepted: cubes
        written by other tools are checked variable by variable when read).
    """
    if isinstance(source, xr.Dataset):
        ds = source
    else:
        if isinstance(source, (str, os.PathLike)) and "://" not in os.fspath(source):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise FileNotFoundError(f"training cube not found: {path}")
            if not any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zgroup")):
                raise InputError(f"{path} is not a Zarr training cube (no zarr.json/.zgroup); "
                                 "build one with xterrafm.io.build_training_cube and "
                                 "write_training_cube, or pass an xr.Dataset")
            kwargs.setdefault("consolidated", _is_consolidated(path))
        ds = open_zarr_cube(source, as_dataset=True, chunks=chunks, **kwargs)
    layout = ds.attrs.get("xterrafm_layout")
    if layout is not None and layout != LAYOUT:
        raise InputError(f"{source!r} records layout {layout!r}, not an xterrafm training cube "
                         f"({LAYOUT!r})")
    return ds


def _is_consolidated(path: str) -> bool:
    """Whether a Zarr directory holds consolidated metadata (v2 ``.zmetadata`` or v3 root)."""
    if os.path.exists(os.path.join(path, ".zmetadata")):
        return True
    root = os.path.join(path, "zarr.json")
    if os.path.exists(root):
        with open(root) as fh:
            return bool(json.load(fh).get("consolidated_metadata"))
    return False
