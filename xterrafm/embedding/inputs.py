"""Input cubes as the encoder takes them: ``(time, band, y, x)`` in the modality's band order.

:func:`read_band_input` accepts what users hold — a DataArray with a ``band`` dimension (the
readers of :mod:`xterrafm.io`, ``rioxarray.open_rasterio``, a hand-built cube) or a Dataset
with one variable per band (odc-stac) — and either returns the cube in the modality's band
order, with the metadata of each band that calibration needs (:mod:`~xterrafm.embedding.
calibration`), or refuses it with an error that names the problem (missing band, unnamed
bands, no CRS, unknown modality), before any pixel is read.

Band names come from, in this order: the ``bands=`` setting; the ``band`` coordinate when it
holds names; the band descriptions of a GeoTIFF (rioxarray's ``long_name`` attribute, or
``description``/``band_names``); a Dataset's variable names. A band coordinate of plain numbers
(rioxarray's ``1..N``) without descriptions is refused: its order cannot be known. A ``band``
dimension with no coordinate at all is taken to hold the modality's bands in TerraFM order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import ModalitySpec, check_modality, get_modality
from xterrafm.errors import BandNotFoundError, InputError, UsageError

with import_gate():
    import odc.geo.xr  # noqa: F401  (registers .odc)
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["BandInput", "as_band_cube", "cube_geobox", "read_band_input"]

#: Attributes that hold one value per band of a rioxarray DataArray.
_PER_BAND_ATTRS = {"scales": "scale_factor", "offsets": "add_offset", "units": "units",
                   "long_name": "long_name"}


@dataclass(frozen=True)
class BandInput:
    """An input brought to the modality's band order, values untouched.

    Attributes
    ----------
    cube : DataArray
        ``(time, band, y, x)``, ``band`` labelled with the canonical names.
    modality : str
        Canonical modality name.
    labels : tuple of str
        The input's own name of each band (variable name, coordinate label, description).
    band_attrs : tuple of dict
        Per band: the attributes of its source (a Dataset variable's, or the DataArray's with
        per-band lists such as rioxarray's ``scales`` resolved for that band). Attributes, not
        encoding: by the CF conventions a ``scale_factor`` or ``_FillValue`` in the attributes
        is still to be applied, one in the encoding was applied when the file was decoded.
    attrs : dict
        The input's own attributes.
    dtypes : tuple of str
        Per band: the dtype of its source (a Dataset's variables may differ, and concatenation
        promotes them to one).
    """

    cube: xr.DataArray
    modality: str
    labels: tuple[str, ...]
    band_attrs: tuple[dict, ...] = field(default=())
    attrs: dict = field(default_factory=dict)
    dtypes: tuple[str, ...] = field(default=())


def _modality(obj: xr.DataArray | xr.Dataset, modality: str | None) -> str:
    modality = modality if modality is not None else obj.attrs.get("modality")
    if modality is None:
        raise UsageError("the cube's attrs record no 'modality'; pass modality= ('s1', "
                         "'s2_l1c' or 's2_l2a')")
    try:
        return check_modality(modality)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _match(spec: ModalitySpec, names: Sequence[str], where: str) -> list[int]:
    """Index in ``names`` of each band of ``spec``, in TerraFM order."""
    order = []
    for b in spec.bands:
        hits = [i for i, n in enumerate(names) if b.matches(n)]
        if not hits:
            raise BandNotFoundError(f"band {b.name} of modality {spec.name!r} is missing from "
                                    f"{where}; its bands are {list(names)}")
        if len(hits) > 1:
            raise InputError(f"band {b.name} of modality {spec.name!r} appears {len(hits)} "
                             f"times in {where} ({[names[i] for i in hits]}); name the bands "
                             "with bands=")
        order.append(hits[0])
    return order


def _given_names(bands: Any, labels: Sequence[str], where: str) -> list[str]:
    """The names ``bands=`` gives the input's ``labels`` (a sequence in order, or a mapping)."""
    if bands and isinstance(bands[0], tuple):  # mapping {input label: band}
        table = {str(k): v for k, v in bands}
        unknown = sorted(set(table) - {str(lab) for lab in labels})
        if unknown:
            raise UsageError(f"bands= names {unknown}, which {where} does not have; its bands "
                             f"are {list(labels)}")
        return [table.get(str(lab), str(lab)) for lab in labels]
    if len(bands) != len(labels):
        raise UsageError(f"bands= names {len(bands)} bands but {where} has {len(labels)} "
                         f"({list(labels)}); give one name per band, in the input's order")
    return list(bands)


def _descriptions(obj: xr.DataArray, n: int) -> list[str] | None:
    for key in ("long_name", "band_names", "descriptions", "description"):
        value = obj.attrs.get(key)
        if isinstance(value, (list, tuple)) and len(value) == n and all(value):
            return [str(v) for v in value]
    return None


def _band_attrs_of_array(obj: xr.DataArray, index: int, n: int) -> dict:
    attrs = dict(obj.attrs)
    for per_band, single in _PER_BAND_ATTRS.items():
        value = attrs.get(per_band)
        if isinstance(value, (list, tuple)) and len(value) == n:
            attrs[single] = value[index]
    attrs.pop("scales", None)
    attrs.pop("offsets", None)
    return attrs


def _from_dataset(obj: xr.Dataset, spec: ModalitySpec, bands: Any) -> BandInput:
    variables = [str(v) for v in obj.data_vars]
    names = variables if bands is None else _given_names(bands, variables, "the Dataset")
    order = _match(spec, names, "the Dataset")
    chosen = [variables[i] for i in order]
    cube = xr.concat([obj[v] for v in chosen], dim="band", coords="minimal",
                     compat="override", join="override")
    cube = cube.assign_coords(band=spec.band_names)
    cube.attrs = dict(obj.attrs)
    band_attrs = tuple(dict(obj[v].attrs) for v in chosen)
    return BandInput(cube, spec.name, tuple(chosen), band_attrs, dict(obj.attrs),
                     tuple(str(obj[v].dtype) for v in chosen))


def _from_dataarray(obj: xr.DataArray, spec: ModalitySpec, bands: Any) -> BandInput:
    if "band" not in obj.dims:
        raise InputError(f"expected a DataArray with a 'band' dimension; got dims {obj.dims}")
    n = obj.sizes["band"]
    if "band" in obj.coords:
        labels = [str(b) for b in obj["band"].values]
    else:
        labels = [str(i + 1) for i in range(n)]
    numbered = "band" not in obj.coords or obj["band"].dtype.kind in "iuf"
    if bands is not None:
        names = _given_names(bands, labels, "the cube")
    elif not numbered:
        names = labels
    elif (described := _descriptions(obj, n)) is not None:
        names = described
    elif "band" not in obj.coords:
        if n != spec.n_bands:
            raise InputError(f"modality {spec.name!r} has {spec.n_bands} bands; the cube has {n}")
        names = spec.band_names  # an unlabelled band dimension: TerraFM order
    else:
        raise InputError(
            f"the cube's bands are numbered {labels[0]}..{labels[-1]} (rioxarray.open_rasterio "
            "numbers them so) and carry no names (no band descriptions / long_name), so their "
            "order cannot be known: pass bands=[...] naming them in order (e.g. "
            f"bands={spec.band_names[:3] + ['...']}), write band descriptions into the "
            "GeoTIFF, or open it with xterrafm.io.open_geotiff (bands in TerraFM order)")
    order = _match(spec, names, "the cube")
    cube = obj.isel(band=order) if order != list(range(n)) else obj
    cube = cube.assign_coords(band=spec.band_names)
    band_attrs = tuple(_band_attrs_of_array(obj, i, n) for i in order)
    return BandInput(cube, spec.name, tuple(names[i] for i in order), band_attrs,
                     dict(obj.attrs), (str(obj.dtype),) * len(order))


def read_band_input(obj: xr.DataArray | xr.Dataset, modality: str | None = None,
                    bands: Any = None) -> BandInput:
    """Bring an input to ``(time, band, y, x)`` in the modality's band order.

    Parameters
    ----------
    obj : DataArray or Dataset
        A DataArray with a ``band`` dimension (``(time, band, y, x)`` or ``(band, y, x)``), or
        a Dataset with one variable per band (odc-stac style; names matched through the band
        aliases of :mod:`xterrafm.bands`).
    modality : str, optional
        Defaults to ``obj.attrs["modality"]``.
    bands : sequence of str or tuple of pairs, optional
        The ``bands`` setting (:func:`~xterrafm.embedding.calibration_spec.parse_bands`).

    Returns
    -------
    BandInput
        The cube gets a length-1 ``time`` when the input had none; values are untouched.

    Raises
    ------
    UsageError
        No or an unknown modality; ``bands=`` that does not fit the input.
    BandNotFoundError
        A band of the modality is missing (the message lists what the input has).
    InputError
        Other dimensions than ``(time, band, y, x)``, numbered bands without names, a band
        count that does not match.
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise InputError(f"expected an xarray DataArray or Dataset; got {type(obj).__name__}")
    spec = get_modality(_modality(obj, modality))
    inp = _from_dataset(obj, spec, bands) if isinstance(obj, xr.Dataset) else \
        _from_dataarray(obj, spec, bands)
    cube = inp.cube
    if "time" not in cube.dims:
        cube = cube.expand_dims("time")
    extra = set(cube.dims) - {"time", "band", "y", "x"}
    if extra or not {"y", "x"} <= set(cube.dims):
        raise InputError(f"expected dims (time, band, y, x); got {cube.dims}")
    return BandInput(cube.transpose("time", "band", "y", "x"), inp.modality, inp.labels,
                     inp.band_attrs, inp.attrs, inp.dtypes)


def as_band_cube(obj: xr.DataArray | xr.Dataset, modality: str | None = None,
                 bands: Any = None) -> tuple[xr.DataArray, str]:
    """:func:`read_band_input`'s cube and modality (values untouched)."""
    inp = read_band_input(obj, modality, bands)
    return inp.cube, inp.modality


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
    if cube.sizes.get("time", 1) == 0:
        raise InputError("the cube has no time step (time=0): check the datetime selection")
    try:
        geobox = cube.odc.geobox
    except Exception as err:  # noqa: BLE001 - any failure means: no usable grid
        raise InputError(f"the cube has no usable geo-referencing (CRS + regular y/x): "
                         f"{err}") from err
    if geobox is None or geobox.crs is None:
        raise InputError("the cube has no CRS; write one with cube.rio.write_crs(...) or load "
                         "it with xterrafm.io")
    return geobox
