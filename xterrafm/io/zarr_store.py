"""Write xterrafm cubes to Zarr and open them again with their CRS.

A cube ``(time, band, y, x)`` is stored as one array variable named after the cube (its
``name``, else ``attrs["modality"]``), next to its coordinates ``time``, ``band``, ``y``, ``x``
and ``spatial_ref`` (the CRS as CF ``crs_wkt`` / GDAL ``spatial_ref`` attributes; the variable
carries ``grid_mapping: spatial_ref``). Cube attributes go to the variable and the group.
Zarr format 3 is the default. Opening uses ``decode_coords="all"`` so the CRS comes back as the
``spatial_ref`` coordinate and ``cube.rio.crs`` / ``cube.odc.geobox`` work again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Union

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    import odc.geo.xr  # noqa: F401  (registers .odc on the cubes returned)
    import rioxarray  # noqa: F401  (registers .rio on the cubes returned)
    import xarray as xr

__all__ = ["open_zarr_cube", "write_zarr_cube"]

StoreLike = Union[str, os.PathLike, Any]


def _jsonable(value: Any) -> Any:
    """Attribute values Zarr can store as JSON (numpy scalars/arrays -> Python, NaN -> "nan")."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _regular_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Rechunk so every dask chunk but the last along each dim has the same size (Zarr)."""
    if not ds.chunks:
        return ds
    target = {d: max(c) for d, c in ds.chunks.items()}
    irregular = any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0])
                    for c in ds.chunks.values())
    return ds.chunk(target) if irregular else ds


def _prepare(obj: xr.DataArray | xr.Dataset, name: str | None) -> xr.Dataset:
    if isinstance(obj, xr.DataArray):
        var = name or obj.name or obj.attrs.get("modality") or "cube"
        ds = obj.to_dataset(name=str(var), promote_attrs=True)
    elif isinstance(obj, xr.Dataset):
        ds = obj.copy()
    else:
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(obj)!r}")
    ds.attrs = {k: _jsonable(v) for k, v in ds.attrs.items()}
    for v in ds.variables.values():
        v.attrs = {k: _jsonable(a) for k, a in v.attrs.items()}
        v.encoding = {}
    for k in ds.data_vars:
        if "spatial_ref" in ds.coords and {"y", "x"} <= set(ds[k].dims):
            ds[k].attrs["grid_mapping"] = "spatial_ref"
    for c in ds.coords:
        if ds[c].dtype.kind == "U":  # variable-length strings: portable in Zarr v2 and v3
            ds = ds.assign_coords({c: ds[c].astype(object)})
    return _regular_chunks(ds)


def _exists(store: StoreLike, group: str | None) -> bool:
    if not isinstance(store, (str, os.PathLike)):
        return False
    path = os.fspath(store)
    if "://" in path:
        return False
    if group:
        path = os.path.join(path, group)
    return os.path.exists(os.path.join(path, "zarr.json")) or os.path.exists(
        os.path.join(path, ".zgroup"))


def write_zarr_cube(
    cube: xr.DataArray | xr.Dataset,
    store: StoreLike,
    *,
    name: str | None = None,
    group: str | None = None,
    mode: str = "w-",
    append_dim: str | None = None,
    zarr_format: int = 3,
    compute: bool = True,
    **kwargs: Any,
) -> Any:
    """Write a cube (or a Dataset of cubes) to Zarr, keeping CRS, coordinates and attributes.

    Parameters
    ----------
    cube : xarray.DataArray or xarray.Dataset
        An xterrafm cube ``(time, band, y, x)`` or a Dataset of such variables.
    store : path or zarr store
        Destination.
    name : str, optional
        Variable name for a DataArray; default ``cube.name`` or ``attrs["modality"]``.
    group : str, optional
        Zarr group inside the store.
    mode : {"w-", "w", "a", "r+"}
        ``"w-"`` (default) refuses to touch an existing store, so data already written is
        never lost by accident; ``"w"`` overwrites; ``"a"`` with ``append_dim`` appends.
    append_dim : str, optional
        Dimension to append along (e.g. ``"time"``), with ``mode="a"``.
    zarr_format : int
        2 or 3 (default).
    compute : bool
        If False, return the dask delayed write instead of writing now.
    **kwargs
        Passed to :meth:`xarray.Dataset.to_zarr` (``encoding=``, ``consolidated=`` ...).

    Returns
    -------
    The result of :meth:`xarray.Dataset.to_zarr` (a ``ZarrStore`` or a ``Delayed``).
    """
    if mode not in ("w-", "w", "a", "r+"):
        raise ValueError(f"mode must be one of 'w-', 'w', 'a', 'r+'; got {mode!r}")
    if mode == "w-" and _exists(store, group):
        raise FileExistsError(
            f"Zarr store {os.fspath(store)!r}{f' group {group!r}' if group else ''} already "
            "exists; pass mode='w' to overwrite it or mode='a' with append_dim= to append"
        )
    ds = _prepare(cube, name)
    if append_dim is not None and mode == "w-":
        mode = "a"
    kwargs.setdefault("consolidated", zarr_format == 2)
    return ds.to_zarr(store, group=group, mode=mode, append_dim=append_dim,
                      zarr_format=zarr_format, compute=compute, **kwargs)


def open_zarr_cube(
    store: StoreLike,
    *,
    name: str | None = None,
    group: str | None = None,
    chunks: Mapping[str, int] | str | None = "auto",
    as_dataset: bool = False,
    **kwargs: Any,
) -> xr.DataArray | xr.Dataset:
    """Open a cube written by :func:`write_zarr_cube`, lazily, with its CRS.

    Parameters
    ----------
    store : path or zarr store
        Source.
    name : str, optional
        Variable to return; default: the only data variable.
    group : str, optional
        Zarr group inside the store.
    chunks : dict, "auto" or None
        Dask chunks; ``"auto"`` (default) follows the stored chunks.
    as_dataset : bool
        Return the whole Dataset instead of one variable.
    **kwargs
        Passed to :func:`xarray.open_zarr`.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        With the ``spatial_ref`` coordinate decoded (``decode_coords="all"``).
    """
    if isinstance(store, (str, os.PathLike)) and "://" not in os.fspath(store):
        if not os.path.exists(os.fspath(store)):
            raise FileNotFoundError(f"Zarr store {os.fspath(store)!r} does not exist")
        if os.path.exists(os.path.join(os.fspath(store), "zarr.json")):
            kwargs.setdefault("consolidated", False)  # Zarr v3: written without consolidation
    if chunks == "auto":
        chunks = {}
    ds = xr.open_zarr(store, group=group, chunks=chunks, decode_coords="all", **kwargs)
    for c in ds.coords:
        if ds[c].dtype.kind in "OT":  # strings back as fixed-width unicode, as the readers give
            ds = ds.assign_coords({c: (ds[c].dims, np.array([str(v) for v in ds[c].values.ravel()]).reshape(ds[c].shape))})
    if as_dataset:
        return ds
    names = list(ds.data_vars)
    if name is None:
        if len(names) != 1:
            raise ValueError(f"the Zarr store holds variables {names}; pass name= to pick one")
        name = names[0]
    if name not in ds.data_vars:
        raise KeyError(f"variable {name!r} not in the Zarr store; it holds {names}")
    return ds[name]
