"""Input cubes as the encoder takes them: ``(time, band, y, x)`` in the modality's band order.

:func:`as_band_cube` accepts what users hold — a DataArray with a ``band`` dimension (the
readers of :mod:`xterrafm.io`, ``rioxarray.open_rasterio``, a hand-built cube) or a Dataset
with one variable per band (odc-stac) — and either returns the cube in the contract the
encoder needs or refuses it with an error that names the problem (missing band, no CRS,
unknown modality), before any pixel is read.
"""

from __future__ import annotations

from xterrafm._imports import import_gate
from xterrafm.bands import check_modality, get_modality, resolve_band
from xterrafm.errors import BandNotFoundError, InputError, UsageError

with import_gate():
    import odc.geo.xr  # noqa: F401  (registers .odc)
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["as_band_cube", "cube_geobox"]


def _modality(obj: xr.DataArray | xr.Dataset, modality: str | None) -> str:
    modality = modality if modality is not None else obj.attrs.get("modality")
    if modality is None:
        raise UsageError("the cube's attrs record no 'modality'; pass modality= ('s1', "
                         "'s2_l1c' or 's2_l2a')")
    try:
        return check_modality(modality)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _from_dataset(obj: xr.Dataset, modality: str) -> xr.DataArray:
    spec = get_modality(modality)
    names = [str(v) for v in obj.data_vars]
    mapping = resolve_band(modality, names)
    missing = [b for b in spec.band_names if b not in mapping]
    if missing:
        raise BandNotFoundError(f"band(s) {missing} of modality {modality!r} are missing from "
                                f"the Dataset; its variables are {names}")
    cube = xr.concat([obj[mapping[b]] for b in spec.band_names], dim="band", coords="minimal",
                     compat="override")
    cube = cube.assign_coords(band=spec.band_names)
    cube.attrs = dict(obj.attrs)
    return cube


def _from_dataarray(obj: xr.DataArray, modality: str) -> xr.DataArray:
    spec = get_modality(modality)
    if "band" not in obj.dims:
        raise InputError(f"expected a DataArray with a 'band' dimension; got dims {obj.dims}")
    if "band" not in obj.coords:
        if obj.sizes["band"] != spec.n_bands:
            raise InputError(f"modality {modality!r} has {spec.n_bands} bands; the cube has "
                             f"{obj.sizes['band']}")
        return obj.assign_coords(band=spec.band_names)
    names = [str(b) for b in obj["band"].values]
    order = []
    for b in spec.bands:
        hits = [i for i, n in enumerate(names) if b.matches(n)]
        if not hits:
            raise BandNotFoundError(f"band {b.name} of modality {modality!r} is missing from the "
                                    f"cube; its bands are {names}")
        order.append(hits[0])
    cube = obj.isel(band=order) if order != list(range(len(names))) else obj
    return cube.assign_coords(band=spec.band_names)


def as_band_cube(obj: xr.DataArray | xr.Dataset, modality: str | None = None
                 ) -> tuple[xr.DataArray, str]:
    """Bring a cube to ``(time, band, y, x)`` in the modality's band order.

    Parameters
    ----------
    obj : DataArray or Dataset
        A DataArray with a ``band`` dimension (``(time, band, y, x)`` or ``(band, y, x)``), or
        a Dataset with one variable per band (odc-stac style; names matched through the band
        aliases of :mod:`xterrafm.bands`).
    modality : str, optional
        Defaults to ``obj.attrs["modality"]``.

    Returns
    -------
    cube : DataArray
        ``(time, band, y, x)``, with a length-1 ``time`` added when the input had none.
    modality : str
        Canonical modality name.

    Raises
    ------
    UsageError
        No or an unknown modality.
    BandNotFoundError
        A band of the modality is missing (the message lists what the input has).
    InputError
        Other dimensions than ``(time, band, y, x)``, or a band count that does not match.
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise InputError(f"expected an xarray DataArray or Dataset; got {type(obj).__name__}")
    modality = _modality(obj, modality)
    cube = _from_dataset(obj, modality) if isinstance(obj, xr.Dataset) else \
        _from_dataarray(obj, modality)
    if "time" not in cube.dims:
        cube = cube.expand_dims("time")
    extra = set(cube.dims) - {"time", "band", "y", "x"}
    if extra or not {"y", "x"} <= set(cube.dims):
        raise InputError(f"expected dims (time, band, y, x); got {cube.dims}")
    return cube.transpose("time", "band", "y", "x"), modality


def cube_geobox(cube: xr.DataArray) -> GeoBox:
    """The pixel grid of a cube, with its CRS.

    Raises
    ------
    InputError
        An empty cube, no regular ``y``/``x`` grid, or no CRS (the message says how to add one).
    """
    if cube.sizes.get("y", 0) == 0 or cube.sizes.get("x", 0) == 0:
        raise InputError(f"the cube is empty (y={cube.sizes.get('y', 0)}, "
                         f"x={cube.sizes.get('x', 0)} pixels): check the bbox or selection")
    try:
        geobox = cube.odc.geobox
    except Exception as err:  # noqa: BLE001 - any failure means: no usable grid
        raise InputError(f"the cube has no usable geo-referencing (CRS + regular y/x): "
                         f"{err}") from err
    if geobox is None or geobox.crs is None:
        raise InputError("the cube has no CRS; write one with cube.rio.write_crs(...) or load "
                         "it with xterrafm.io")
    return geobox
