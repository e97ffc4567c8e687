"""The ``calibration=`` and ``bands=`` settings, parsed and checked (standard library only).

``calibration`` says how an input's values become physical units (Sentinel-2 reflectance,
Sentinel-1 linear power):

``"auto"`` (default)
    From what the input carries: STAC items passed as ``items=`` (``raster:bands``
    scale/offset/nodata/unit, or the Sentinel-2 processing baseline, exactly as
    :func:`xterrafm.io.load_stac`), CF attributes (``scale_factor``, ``add_offset``,
    ``_FillValue``, ``missing_value``), ``nodata`` attributes and rioxarray's nodata, a ``units``
    attribute of decibels. Integer and boolean values without such metadata, and values far
    outside the modality's physical range, are refused.
``"none"``
    The values are physical units already; nothing is applied and no value is sampled (integer
    and boolean inputs are still refused).
``"s2-dn"``
    Sentinel-2 digital numbers without offset (processing baseline before 04.00, or harmonised
    products): ``DN / 10000``, nodata 0.
``"s2-dn-offset"``
    Sentinel-2 digital numbers of processing baseline 04.00 or later: ``(DN - 1000) / 10000``,
    nodata 0.
``"db"``
    Sentinel-1 backscatter in decibels: ``10 ** (dB / 10)``.
a mapping
    ``{"scale": s, "offset": o, "nodata": n, "db": False}`` (each optional; ``scale``/``offset``
    a number or one per band in the modality's band order): ``value = DN * scale + offset``.
    On the command line: ``--calibration scale=0.0001,offset=-0.1,nodata=0``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xterrafm.errors import UsageError

__all__ = ["PRESETS", "CalibrationSpec", "parse_bands", "parse_calibration",
           "parse_calibration_text"]


@dataclass(frozen=True)
class CalibrationSpec:
    """A parsed ``calibration`` setting.

    Attributes
    ----------
    name : str
        ``"auto"``, ``"none"``, a preset name or ``"custom"``.
    scale, offset : tuple of float or None
        ``value = DN * scale + offset`` (one value, or one per band); None: not applied.
    nodata : float or None
        Value that means no data (becomes NaN before scaling); None: NaN only.
    db : bool
        Decibels to linear power after scaling.
    modality : str or None
        Modality family the preset is for (``"s2"``, ``"s1"``), None for any.
    """

    name: str
    scale: tuple[float, ...] | None = None
    offset: tuple[float, ...] | None = None
    nodata: float | None = None
    db: bool = False
    modality: str | None = None

    @property
    def explicit(self) -> bool:
        """Whether the setting states a conversion (not ``"auto"`` or ``"none"``)."""
        return self.name not in ("auto", "none")

    def describe(self) -> str:
        """A one-line description for the output's attrs."""
        if not self.explicit:
            return self.name
        parts = []
        if self.scale is not None or self.offset is not None:
            parts.append(f"value*{_fmt(self.scale or (1.0,))}+{_fmt(self.offset or (0.0,))}")
        if self.db:
            parts.append("10**(value/10)")
        if self.nodata is not None:
            parts.append(f"nodata {self.nodata:g}")
        return f"{self.name}: " + ", ".join(parts)


def _fmt(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else "[" + ",".join(f"{v:g}" for v in values) + "]"


#: Named calibrations.
PRESETS: dict[str, CalibrationSpec] = {
    "auto": CalibrationSpec("auto"),
    "none": CalibrationSpec("none"),
    "s2-dn": CalibrationSpec("s2-dn", (1e-4,), (0.0,), 0.0, modality="s2"),
    "s2-dn-offset": CalibrationSpec("s2-dn-offset", (1e-4,), (-0.1,), 0.0, modality="s2"),
    "db": CalibrationSpec("db", db=True, modality="s1"),
}


def _numbers(name: str, value: Any) -> tuple[float, ...]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise UsageError(f"calibration {name} must be a finite number or a list of them; "
                             f"got {value!r}")
        out.append(float(v))
    if not out:
        raise UsageError(f"calibration {name} is empty")
    return tuple(out)


def parse_calibration(value: Any) -> CalibrationSpec:
    """The :class:`CalibrationSpec` of a ``calibration`` setting value.

    Raises
    ------
    UsageError
        Unknown name, unknown mapping keys, or values that are not finite numbers.
    """
    if isinstance(value, CalibrationSpec):
        return value
    if value is None:
        return PRESETS["none"]
    if isinstance(value, str):
        key = value.strip().lower().replace("_", "-")
        if key in PRESETS:
            return PRESETS[key]
        if "=" in key:
            return parse_calibration_text(value)
        raise UsageError(f"calibration must be one of {sorted(PRESETS)} or a mapping "
                         f"{{'scale', 'offset', 'nodata', 'db'}}; got {value!r}")
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"scale", "offset", "nodata", "db"})
        if unknown:
            raise UsageError(f"calibration has unknown key(s) {unknown}; known: scale, offset, "
                             "nodata, db")
        scale = _numbers("scale", value["scale"]) if value.get("scale") is not None else None
        offset = _numbers("offset", value["offset"]) if value.get("offset") is not None \
            else None
        if scale is not None and any(s == 0 for s in scale):
            raise UsageError(f"calibration scale must not be 0; got {value['scale']!r}")
        nodata = value.get("nodata")
        if nodata is not None:
            nodata = _numbers("nodata", nodata)
            if len(nodata) != 1:
                raise UsageError("calibration nodata must be one number")
            nodata = nodata[0]
        db = value.get("db", False)
        if not isinstance(db, bool):
            raise UsageError(f"calibration db must be True or False; got {db!r}")
        if scale is None and offset is None and not db and nodata is None:
            raise UsageError("calibration mapping states nothing; give scale, offset, nodata "
                             "or db")
        return CalibrationSpec("custom", scale, offset, nodata, db)
    raise UsageError(f"calibration must be a name ({sorted(PRESETS)}) or a mapping; got "
                     f"{type(value).__name__}")


def parse_calibration_text(text: str) -> CalibrationSpec:
    """``"scale=0.0001,offset=-0.1,nodata=0"`` (or a preset name), as the command line gives it."""
    if "=" not in text:
        return parse_calibration(text)
    fields: dict[str, Any] = {}
    for part in text.split(","):
        if "=" not in part:
            raise UsageError(f"calibration {text!r}: expected key=value pairs, got {part!r}")
        key, raw = (s.strip() for s in part.split("=", 1))
        key = key.lower()
        if key == "db":
            fields[key] = raw.lower() in ("1", "true", "yes")
            continue
        try:
            fields[key] = float(raw)
        except ValueError:
            raise UsageError(f"calibration {text!r}: {key}={raw!r} is not a number") from None
    return parse_calibration(fields)


def parse_bands(value: Any) -> tuple[str, ...] | tuple[tuple[str, str], ...] | None:
    """The ``bands`` setting: None, a tuple of names (the input's bands in its own order), or a
    tuple of ``(input label, band)`` pairs (from a mapping).

    A string is split at commas (``"B02,B03,B04"``, as the command line gives it).

    Raises
    ------
    UsageError
        Empty names, repeated names, or something that is neither a sequence nor a mapping.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in (s.strip() for s in value.split(",")) if v]
    if isinstance(value, Mapping):
        pairs = tuple((str(k), str(v)) for k, v in value.items())
        if not pairs:
            raise UsageError("bands is an empty mapping")
        targets = [v for _, v in pairs]
        if len(set(targets)) != len(targets):
            raise UsageError(f"bands maps several inputs to one band: {dict(pairs)}")
        return pairs
    if isinstance(value, Iterable):
        names = tuple(str(v).strip() for v in value)
        if not names or any(not n for n in names):
            raise UsageError(f"bands must name every band of the input; got {value!r}")
        if len(set(n.lower() for n in names)) != len(names):
            raise UsageError(f"bands names a band twice: {list(names)}")
        return names
    raise UsageError(f"bands must be a list of band names or a mapping; got {value!r}")
