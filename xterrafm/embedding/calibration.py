"""Input values to physical units, or a refusal that says what to do — before any embedding.

:func:`calibrate_input` takes a :class:`~xterrafm.embedding.inputs.BandInput` and the
``calibration``/``items`` settings (:mod:`~xterrafm.embedding.calibration_spec`) and returns a
lazy cube in physical units (Sentinel-2 reflectance, Sentinel-1 linear power, NaN for no data)
with a description of what was applied. What it decides from, in order:

1. a cube from :func:`xterrafm.io.load_stac` (or a Zarr cube written from one) is calibrated
   already: it is taken as it is (not sampled); on a cube that an xterrafm reader calibrated
   (``attrs["calibration_source"]`` other than ``"none"``) an explicit calibration or
   ``items=`` is refused, since it would apply twice (a reader that applied nothing, such as
   ``open_geotiff`` on Sentinel-1 files, leaves room for ``calibration="db"``);
2. an explicit calibration (``"s2-dn"``, ``"s2-dn-offset"``, ``"db"``, a mapping);
3. ``items=``: the items' ``raster:bands`` (or processing baseline), as ``load_stac`` reads
   them (:mod:`xterrafm.io.stac_calibration`); Sentinel-1 items that are not RTC are refused;
4. the input's attributes: CF ``scale_factor``/``add_offset``, ``_FillValue``/``missing_value``/
   ``nodata`` (rioxarray and odc-stac write these), ``units`` of decibels.

Boolean inputs, and integer inputs that nothing scales, are refused from their dtype alone.
Then, unless ``calibration="none"``, a bounded sample of the result is checked against the
modality's physical range (:func:`check_value_range`): reflectance mostly in 0..1, linear power
non-negative and mostly below 1. The sample is at most :data:`SAMPLE_WINDOWS` windows of
:data:`SAMPLE_PX` px (all bands, the first date), each inside one dask chunk, computed in one
``dask.compute``: at most 4 chunks of one date are read, never the whole cube. Cubes from
``load_stac`` and ``calibration="none"`` are not sampled (no compute at all).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.embedding.calibration_spec import CalibrationSpec
from xterrafm.embedding.inputs import BandInput
from xterrafm.errors import InputError, UsageError, XterrafmWarning

with import_gate():
    import dask
    import dask.array as da
    import numpy as np
    import xarray as xr

__all__ = ["SAMPLE_PX", "SAMPLE_WINDOWS", "calibrate_input", "check_value_range",
           "value_sample"]

#: Side in pixels of each window of the value sample.
SAMPLE_PX = 32
#: Windows in the value sample (centred in the chunks at the quarters of the grid).
SAMPLE_WINDOWS = 4

_FILL_ATTRS = ("_FillValue", "missing_value", "nodata", "fill_value")
_DB = ("db", "decibel", "decibels")

#: What to do instead, by modality family.
_ADVICE = {
    "s2": ("load the items with xterrafm.io.load_stac (it applies raster:bands scale/offset, "
           "the processing-baseline offset and nodata), pass items= (the STAC items an "
           "odc-stac Dataset was loaded from), or say how with calibration='s2-dn' (DN/10000), "
           "'s2-dn-offset' ((DN-1000)/10000, processing baseline >= 04.00) or "
           "calibration={'scale': ..., 'offset': ..., 'nodata': ...}"),
    "s1": ("TerraFM takes Sentinel-1 RTC gamma0 in linear power: load RTC items with "
           "xterrafm.io.load_stac, pass items=, convert decibels with calibration='db', or say "
           "how with calibration={'scale': ..., 'offset': ..., 'nodata': ...}; see "
           "docs/inputs.md for the Sentinel-1 products that are valid"),
}


def _family(modality: str) -> str:
    return "s1" if modality == "s1" else "s2"


def _reader_applied(attrs: dict) -> str | None:
    """What an xterrafm reader applied to the cube (its ``calibration_source``), or None for a
    cube no xterrafm reader made; ``"none"`` when the reader applied nothing."""
    if "calibration_source" not in attrs or "nodata_to_nan" not in attrs:
        return None
    return str(attrs["calibration_source"]) or "none"


def _from_load_stac(attrs: dict) -> bool:
    return str(attrs.get("reader", "")).startswith("xterrafm.io.load_stac") and \
        _reader_applied(attrs) is not None


# -- what the input says -----------------------------------------------------------------------
def _attr_number(attrs: dict, keys: Sequence[str]) -> float | None:
    for key in keys:
        value = attrs.get(key)
        if value is None or isinstance(value, (list, tuple, str)):
            continue
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _from_attrs(inp: BandInput) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(scale, offset, nodata, db) per band from CF / rioxarray / odc-stac attributes."""
    n = len(inp.band_attrs)
    scale, offset = np.ones(n), np.zeros(n)
    nodata, db = np.full(n, np.nan), np.zeros(n, bool)
    for i, attrs in enumerate(inp.band_attrs):
        s = _attr_number(attrs, ("scale_factor",))
        o = _attr_number(attrs, ("add_offset",))
        scale[i] = 1.0 if s is None else s
        offset[i] = 0.0 if o is None else o
        nd = _attr_number(attrs, _FILL_ATTRS)
        nodata[i] = np.nan if nd is None else nd
        units = str(attrs.get("units", "")).strip().lower()
        db[i] = units in _DB
        if units in ("amplitude", "dn", "digital number", "digital numbers"):
            raise InputError(f"band {inp.labels[i]!r} has units {attrs['units']!r}: "
                             f"{_ADVICE[_family(inp.modality)]}")
    said = []
    if np.any(scale != 1) or np.any(offset != 0):
        said.append(f"scale_factor {_fmt(scale)} add_offset {_fmt(offset)}")
    if np.any(np.isfinite(nodata)):
        said.append(f"nodata {_fmt(nodata)}")
    if db.any():
        said.append("units dB")
    return scale, offset, nodata, db, ("attrs: " + ", ".join(said)) if said else "as given"


def _fmt(values: np.ndarray) -> str:
    vals = [float(v) for v in np.atleast_1d(values)]
    return f"{vals[0]:g}" if len(set(vals)) <= 1 else "[" + ",".join(f"{v:g}" for v in vals) + "]"


def _from_spec(spec: CalibrationSpec, inp: BandInput
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    n = inp.cube.sizes["band"]
    if spec.modality is not None and spec.modality != _family(inp.modality):
        raise UsageError(f"calibration={spec.name!r} is for "
                         f"{'Sentinel-1' if spec.modality == 's1' else 'Sentinel-2'} inputs, "
                         f"not modality {inp.modality!r}")
    out = []
    for name, values, default in (("scale", spec.scale, 1.0), ("offset", spec.offset, 0.0)):
        arr = np.full(n, default) if values is None else np.asarray(values, "float64")
        if arr.size == 1:
            arr = np.full(n, float(arr[0]))
        if arr.size != n:
            raise UsageError(f"calibration {name} has {arr.size} values; modality "
                             f"{inp.modality!r} has {n} bands (give one value, or one per band "
                             "in TerraFM order)")
        out.append(arr)
    nodata = np.full(n, np.nan if spec.nodata is None else spec.nodata)
    return out[0], out[1], nodata, np.full(n, spec.db), spec.describe()


def _from_items(items: Any, inp: BandInput
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Scale/offset per (time, band), nodata and dB per band, from the STAC items."""
    from xterrafm.bands import get_modality
    from xterrafm.io.stac_calibration import (
        calibration_arrays,
        check_s1_products,
        item_calibrations,
    )
    from xterrafm.io.stac_items import resolve_items

    resolved = [it for it, _ in resolve_items(items if isinstance(items, str) else list(items))]
    spec = get_modality(inp.modality)
    if spec.name == "s1":
        check_s1_products(resolved)
    keys = dict(zip(spec.band_names, inp.labels, strict=True))
    cals = [item_calibrations(it, spec, keys) for it in resolved]
    times = inp.cube["time"].values if "time" in inp.cube.coords else \
        np.array(["NaT"] * inp.cube.sizes["time"], "datetime64[ns]")
    scale, offset, nodata, sources = calibration_arrays(resolved, cals, spec.band_names,
                                                        times, "time")
    db = {tuple(c[b].db for b in spec.band_names) for c in cals}
    if len(db) > 1:
        raise InputError("the items disagree on which bands are in decibels; pass them "
                         "separately")
    text = (f"STAC items ({', '.join(sources)}): value*{_fmt(scale[0])}+{_fmt(offset[0])}, "
            f"nodata {_fmt(nodata)}")
    return scale, offset, nodata, np.array(db.pop(), bool), text


# -- the value check ---------------------------------------------------------------------------
def value_sample(cube: xr.DataArray) -> np.ndarray:
    """Finite values of a bounded sample of a ``(time, band, y, x)`` cube, as ``(band, n)``.

    :data:`SAMPLE_WINDOWS` windows of :data:`SAMPLE_PX` px of the first date, each centred in
    the chunk that holds a quarter point of the grid (so each lies inside one chunk), all
    bands; one ``dask.compute`` for a dask-backed cube, none for a numpy-backed one.
    """
    data = cube.data
    _, nb, ny, nx = data.shape
    ychunks = data.chunks[2] if isinstance(data, da.Array) else (ny,)
    xchunks = data.chunks[3] if isinstance(data, da.Array) else (nx,)

    def window(chunks: Sequence[int], frac: float) -> slice:
        edges = np.cumsum((0, *chunks))
        pos = min(int(edges[-1] * frac), int(edges[-1]) - 1)
        k = int(np.searchsorted(edges, pos, side="right") - 1)
        lo, hi = int(edges[k]), int(edges[k + 1])
        if len(chunks) == 1:  # one chunk: the window around the quarter point itself
            lo, hi = max(0, pos - SAMPLE_PX // 2), min(hi, pos + SAMPLE_PX // 2 + 1)
        mid = (lo + hi) // 2
        half = SAMPLE_PX // 2
        return slice(max(lo, mid - half), min(hi, mid + half))

    picks = []
    for fy, fx in ((0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))[:SAMPLE_WINDOWS]:
        sl = (window(ychunks, fy), window(xchunks, fx))
        if sl not in picks:
            picks.append(sl)
    parts = [data[0, :, ys, xs] for ys, xs in picks]
    if isinstance(data, da.Array):
        parts = dask.compute(*parts)
    flat = np.concatenate([np.asarray(p, "float64").reshape(nb, -1) for p in parts], axis=1)
    return flat


def check_value_range(sample: np.ndarray, modality: str, *, applied: str) -> str:
    """Refuse values far outside the modality's physical range; a note of what was seen.

    Parameters
    ----------
    sample : ndarray, shape (band, n)
        Values after calibration (NaN for no data).
    modality : str
    applied : str
        What was applied (named in the message).

    Raises
    ------
    InputError
        Sentinel-2: median above 2 or 99th percentile above 10 (digital numbers or percent),
        median below -0.05 (an offset applied twice), 99th percentile below 0.002 (scaled
        twice). Sentinel-1: more than 5 % negative values (decibels), median above 5
        (digital numbers, e.g. of a GRD product).
    """
    values = sample[np.isfinite(sample)]
    if values.size == 0:
        warnings.warn("the value range of the input could not be checked: the sampled "
                      "windows hold no data", XterrafmWarning, stacklevel=4)
        return "range not checked (sample empty)"
    med = float(np.median(values))
    p99 = float(np.percentile(values, 99))
    seen = f"median {med:.4g}, 99th percentile {p99:.4g} over {values.size} sampled values"
    fam = _family(modality)
    problem = None
    if fam == "s2":
        if med > 2.0 or p99 > 10.0:
            problem = ("looks like digital numbers (or percent), not reflectance (mostly "
                       "0..1)")
        elif med < -0.05:
            problem = "is negative: not reflectance (an offset applied twice?)"
        elif p99 < 0.002:
            problem = "is far too small for reflectance (scaled twice?)"
    else:
        neg = float(np.mean(values < 0))
        if neg > 0.05:
            problem = (f"has {100 * neg:.0f} % negative values: this looks like decibels, not "
                       "linear power (pass calibration='db' to convert)")
        elif med > 5.0:
            problem = ("is far above linear backscatter power (mostly below 1): digital "
                       "numbers, e.g. of an uncalibrated GRD product")
    if problem:
        raise InputError(f"the {modality} input ({applied}) {problem}: {seen}. "
                         f"{_ADVICE[fam]}")
    return f"range checked ({seen})"


# -- the whole decision ------------------------------------------------------------------------
def calibrate_input(inp: BandInput, calibration: CalibrationSpec, items: Any = None
                    ) -> tuple[xr.DataArray, str]:
    """The input in physical units (lazy) and a description of what was applied and checked.

    Raises
    ------
    UsageError
        A calibration that does not fit the modality or the band count; a calibration or
        ``items`` given for a cube ``load_stac`` calibrated already.
    InputError
        Boolean or unscaled integer values; non-RTC Sentinel-1 items; values far outside the
        physical range (see :func:`check_value_range`).
    """
    cube, fam = inp.cube, _family(inp.modality)
    applied = _reader_applied(inp.attrs)
    if applied not in (None, "none") and (calibration.explicit or items is not None):
        what = f"calibration={calibration.name!r}" if calibration.explicit else "items="
        raise UsageError(
            f"the cube is in physical units already ({inp.attrs.get('reader', 'its reader')} "
            f"applied {applied}); {what} would calibrate it a second time: leave "
            "calibration='auto' and items=None")
    if _from_load_stac(inp.attrs) and not calibration.explicit and items is None:
        return cube, f"as loaded ({inp.attrs['reader']}: {applied})"
    dtypes = [np.dtype(d) for d in inp.dtypes] or [cube.dtype]
    if cube.dtype.kind == "b" or any(d.kind == "b" for d in dtypes):
        raise InputError(f"the {inp.modality} input is boolean (a mask?), not "
                         f"{'reflectance' if fam == 's2' else 'backscatter'}: "
                         f"{_ADVICE[fam]}")
    integer = [str(d) for d in dtypes if not np.issubdtype(d, np.floating)]
    if calibration.name == "none":
        if integer:
            raise InputError(f"calibration='none' says the input is in physical units, but it "
                             f"holds integers ({integer[0]}): {_ADVICE[fam]}")
        return cube.astype("float32"), "none (physical units, not checked)"
    if calibration.explicit:
        scale, offset, nodata, db, text = _from_spec(calibration, inp)
    elif items is not None:
        scale, offset, nodata, db, text = _from_items(items, inp)
    else:
        scale, offset, nodata, db, text = _from_attrs(inp)
    scale2 = np.broadcast_to(np.atleast_2d(scale), (cube.sizes["time"], scale.shape[-1]))
    offset2 = np.broadcast_to(np.atleast_2d(offset), scale2.shape)
    scaled = bool(np.any(scale2 != 1) or np.any(offset2 != 0) or db.any())
    if integer and not scaled:
        raise InputError(
            f"the {inp.modality} input holds integers ({integer[0]}) and nothing says how they "
            f"become {'reflectance' if fam == 's2' else 'linear power'} (no scale in its "
            f"metadata, no items=, no calibration=): digital numbers are not physical units. "
            f"{_ADVICE[fam]}")
    out = cube.astype("float32")
    nd = xr.DataArray(nodata.astype("float32"), dims="band", coords={"band": cube["band"]})
    if np.any(np.isfinite(nodata)):
        out = out.where(out != nd)
    if scaled:
        s = xr.DataArray(scale2.astype("float32"), dims=("time", "band"))
        o = xr.DataArray(offset2.astype("float32"), dims=("time", "band"))
        out = out * s + o
        if db.any():
            out = xr.where(xr.DataArray(db, dims="band"), 10.0 ** (out / 10.0), out)
        out = out.astype("float32").transpose("time", "band", "y", "x")
    out = out.assign_coords(band=cube["band"])
    out.attrs = dict(cube.attrs)
    note = check_value_range(value_sample(out), inp.modality, applied=text)
    return out, f"{calibration.name}: {text}; {note}"
