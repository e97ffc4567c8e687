"""Lazy cubes from GeoTIFF/COG files, through rioxarray.

:func:`open_geotiff` reads one file per band, or multi-band files, for one or several dates and
returns the same cube contract as :func:`xterrafm.io.load_stac`: dask-backed float32
``(time, band, y, x)`` in physical units, NaN nodata, CRS in ``spatial_ref``.

Files whose grid differs from the output grid (Sentinel-2 20 m and 60 m bands) are resampled
lazily onto it with :func:`odc.geo.xr.xr_reproject` (bilinear by default, nodata excluded).
The output grid is ``geobox`` when given, else the grid of the finest-resolution file.

Calibration (``value = DN * scale + offset``): explicit ``scale``/``offset`` win; else the GDAL
band scale/offset stored in the file when it is not the identity; else for Sentinel-2
``scale = 1e-4`` and the baseline offset (``-0.1`` for ``processing_baseline >= "04.00"``, the
default when no baseline is given, as for all data since 25 January 2022); Sentinel-1 files are
taken as linear power (scale 1, offset 0).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from xterrafm._imports import import_gate
from xterrafm.bands import ModalitySpec, get_modality
from xterrafm.io.stac import DEFAULT_CHUNK_PX

with import_gate():
    import numpy as np
    import pandas as pd
    import rioxarray
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_reproject

__all__ = ["open_geotiff"]

PathLike = Union[str, os.PathLike]
#: One date: a multi-band file, a list of files (bands in TerraFM order across the files),
#: or a mapping ``{band name or alias: single-band file}``.
DateFiles = Union[PathLike, Sequence[PathLike], Mapping[str, PathLike]]


def _band_sources(files: DateFiles, spec: ModalitySpec) -> dict[str, tuple[str, int]]:
    """``{canonical band: (path, 1-based band index in the file)}`` for one date."""
    if isinstance(files, Mapping):
        out: dict[str, tuple[str, int]] = {}
        for key, path in files.items():
            try:
                name = spec.band(key).name
            except KeyError as e:
                raise ValueError(f"{key!r} in the path mapping is not a band of "
                                 f"{spec.name!r} (bands: {spec.band_names})") from e
            out[name] = (os.fspath(path), 1)
        missing = [b for b in spec.band_names if b not in out]
        if missing:
            raise ValueError(f"bands {missing} of {spec.name!r} have no file; mapping keys: "
                             f"{list(files)}")
        return out
    paths = [os.fspath(files)] if isinstance(files, (str, os.PathLike)) else [
        os.fspath(p) for p in files]
    for p in paths:
        if not os.path.exists(p) and "://" not in p:
            raise FileNotFoundError(f"GeoTIFF {p!r} does not exist")
    slots: list[tuple[str, int, str | None]] = []
    with import_gate():
        import rasterio

    for p in paths:
        with rasterio.open(p) as src:
            for i in range(1, src.count + 1):
                slots.append((p, i, src.descriptions[i - 1]))
    # Band descriptions that name every band of the modality win over position.
    named: dict[str, tuple[str, int]] = {}
    for p, i, desc in slots:
        if desc:
            try:
                named.setdefault(spec.band(desc).name, (p, i))
            except KeyError:
                pass
    if len(named) == spec.n_bands:
        return named
    if len(slots) != spec.n_bands:
        raise ValueError(
            f"{spec.name!r} needs {spec.n_bands} bands {spec.band_names}, but the files "
            f"{paths} hold {len(slots)} band(s) and their descriptions do not name them all"
        )
    return {b: (p, i) for b, (p, i, _) in zip(spec.band_names, slots, strict=True)}


def _open_band(path: str, index: int, chunk_px: int, nodata: float | None) -> xr.DataArray:
    """One band as a lazy float32 (y, x) DataArray with nodata -> NaN, chunked at ``chunk_px``."""
    da = rioxarray.open_rasterio(path, chunks={"band": 1, "y": chunk_px, "x": chunk_px},
                                 masked=False, lock=False, mask_and_scale=False)
    da = da.sel(band=index, drop=True)
    nd = nodata if nodata is not None else da.rio.nodata
    scale_factor = float(da.attrs.get("scale_factor", 1.0))
    add_offset = float(da.attrs.get("add_offset", 0.0))
    out = da.astype("float32")
    if nd is not None and not np.isnan(nd):
        out = out.where(da != nd)
    out.attrs = {"nodata": np.nan, "gdal_scale": scale_factor, "gdal_offset": add_offset}
    return out


def _calibration(
    spec: ModalitySpec, band_arrays: Sequence[xr.DataArray], scale: Any, offset: Any,
    processing_baseline: str | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    nb = spec.n_bands
    if scale is not None or offset is not None:
        s = np.broadcast_to(np.asarray(1.0 if scale is None else scale, "float64"), (nb,))
        o = np.broadcast_to(np.asarray(0.0 if offset is None else offset, "float64"), (nb,))
        return s.copy(), o.copy(), "arguments"
    gs = np.array([a.attrs["gdal_scale"] for a in band_arrays])
    go = np.array([a.attrs["gdal_offset"] for a in band_arrays])
    if processing_baseline is None and (np.any(gs != 1.0) or np.any(go != 0.0)):
        return gs, go, "gdal metadata"
    if not spec.name.startswith("s2"):
        return np.ones(nb), np.zeros(nb), "none"
    baseline = float(processing_baseline) if processing_baseline is not None else 4.0
    off = -0.1 if baseline >= 4.0 else 0.0
    source = ("processing_baseline" if processing_baseline is not None
              else "assumed processing_baseline >= 04.00")
    return np.full(nb, 1e-4), np.full(nb, off), source


def _finest_geobox(arrays: Sequence[xr.DataArray]) -> GeoBox:
    return min((a.odc.geobox for a in arrays), key=lambda g: abs(g.resolution.x))


def open_geotiff(
    paths: DateFiles | Sequence[DateFiles],
    modality: str,
    *,
    times: Sequence[Any] | None = None,
    item_ids: Sequence[str] | None = None,
    geobox: GeoBox | None = None,
    chunks: Mapping[str, int] | None = None,
    resampling: str = "bilinear",
    scale: float | Sequence[float] | None = None,
    offset: float | Sequence[float] | None = None,
    processing_baseline: str | None = None,
    nodata: float | None = None,
) -> xr.DataArray:
    """Open GeoTIFF/COG files as a lazy ``(time, band, y, x)`` cube in physical units.

    Parameters
    ----------
    paths : path, list of paths, mapping, or list of those (with ``times``)
        One date as: a multi-band file (bands in TerraFM order, or named by band
        descriptions), a list of files whose bands in order are the modality's bands (e.g. one
        single-band file per band), or a mapping ``{band name or alias: file}``. With
        ``times``, a list holding one such entry per date.
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``.
    times : sequence of datetime-like, optional
        Acquisition time per date; then ``paths`` is a list per date. Without it ``paths`` is
        one date whose time is NaT.
    item_ids : sequence of str, optional
        Identifier per date for ``attrs["item_ids"]``; default: the folder name when a date's
        files share one folder, else the stem of its first file.
    geobox : odc.geo.geobox.GeoBox, optional
        Output grid; default: the grid of the finest-resolution file.
    chunks : dict, optional
        ``{"time": 1, "y": 1120, "x": 1120}`` by default (multiples of 224); all bands in one
        chunk.
    resampling : str
        Resampling onto the output grid (``"bilinear"`` default, ``"nearest"``, ...).
    scale, offset : float or sequence of float, optional
        Explicit calibration ``value = DN * scale + offset`` (per band or for all bands).
    processing_baseline : str, optional
        Sentinel-2 processing baseline, e.g. ``"05.10"``; decides the -0.1 harmonisation offset.
    nodata : float, optional
        Source nodata value; default: the files' own.

    Returns
    -------
    xarray.DataArray
        float32 ``(time, band, y, x)``, dask-backed; attrs as :func:`~xterrafm.io.load_stac`
        (``modality``, ``units``, ``item_ids``, ``scale``, ``offset``, ``calibration_source``,
        ``harmonized``, ``nodata_to_nan``, ``resampling``, ``cloud_mask``, ``reader``) plus
        ``source_paths``.
    """
    spec = get_modality(modality)
    ch = {"time": 1, "y": DEFAULT_CHUNK_PX, "x": DEFAULT_CHUNK_PX} | dict(chunks or {})
    if times is None:
        dates = [paths]
        tvals = [np.datetime64("NaT", "ns")]
    else:
        if isinstance(paths, (str, os.PathLike, Mapping)) or len(paths) != len(times):
            raise ValueError("with times=, paths must be a list with one entry per date "
                             f"({len(times)} dates)")
        dates = list(paths)
        tvals = list(pd.to_datetime(list(times), utc=True).tz_convert(None).values)
    date_cubes, ids, all_paths = [], [], []
    s = o = None
    cal_source = ""
    for files in dates:
        srcs = _band_sources(files, spec)
        arrays = [_open_band(srcs[b][0], srcs[b][1], ch["y"], nodata) for b in spec.band_names]
        target = geobox if geobox is not None else _finest_geobox(arrays)
        on_grid = []
        for a in arrays:
            if a.odc.geobox == target:
                on_grid.append(a)
            else:
                r = xr_reproject(a, target, resampling=resampling, dst_nodata=np.nan)
                on_grid.append(r.chunk({"y": ch["y"], "x": ch["x"]}))
        cube = xr.concat(on_grid, dim=pd.Index(spec.band_names, name="band"),
                         coords="minimal", compat="override", join="override")
        cube_s, cube_o, cal_source = _calibration(spec, arrays, scale, offset,
                                                  processing_baseline)
        if s is not None and (not np.array_equal(s, cube_s) or not np.array_equal(o, cube_o)):
            raise ValueError("the dates' files carry different scale/offset; open them separately")
        s, o = cube_s, cube_o
        date_cubes.append(cube)
        files_used = sorted({Path(p) for p, _ in srcs.values()})
        folders = {f.parent for f in files_used}
        ids.append(files_used[0].parent.name if len(files_used) > 1 and len(folders) == 1
                   else files_used[0].stem)
        all_paths.append(sorted({p for p, _ in srcs.values()}))
    cube = xr.concat(date_cubes, dim="time", coords="minimal", compat="override",
                     join="override")
    cube = cube.assign_coords(time=("time", np.asarray(tvals, "datetime64[ns]")))
    cube = cube.transpose("time", "band", "y", "x")
    sv = xr.DataArray(np.asarray(s, "float32"), dims="band")
    ov = xr.DataArray(np.asarray(o, "float32"), dims="band")
    cube = (cube * sv + ov).astype("float32")
    cube = cube.chunk({"time": ch["time"], "band": -1, "y": ch["y"], "x": ch["x"]})
    cube.name = spec.name
    cube.attrs = {
        "modality": spec.name,
        "units": spec.units,
        "item_ids": list(item_ids) if item_ids is not None else ids,
        "scale": [float(v) for v in s],
        "offset": [float(v) for v in o],
        "calibration_source": cal_source,
        "harmonized": int(spec.name.startswith("s2") and bool(np.any(o != 0))),
        "nodata_to_nan": 1,
        "resampling": resampling,
        "cloud_mask": "none",
        "reader": "xterrafm.io.open_geotiff (rioxarray)",
        "source_paths": [p for ps in all_paths for p in ps],
    }
    return cube
