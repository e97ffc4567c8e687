"""What STAC items say about their pixels: which asset holds a band, how its digital numbers
become physical units, which CRS the item is on and which Sentinel-1 product it is.

Used by :func:`xterrafm.io.load_stac` and by the embedding inputs
(:mod:`xterrafm.embedding.calibration`), so that a cube loaded by ``load_stac`` and an odc-stac
Dataset calibrated from the same items get the same values.

Sentinel-2 harmonisation: since processing baseline 04.00 (25 January 2022) the digital numbers
carry a +1000 offset. Per item and band the offset is taken, in this order, from the asset's
``raster:bands`` scale/offset (Earth Search style; the offset there already includes the
baseline shift), else from ``s2:processing_baseline`` (``>= 04.00``: offset -1000 DN, i.e. -0.1
reflectance), else from the acquisition date. Exactly one of the three is used, so the offset is
never applied twice.

Sentinel-1: TerraFM's radar stem was trained on RTC (radiometrically terrain-corrected gamma0,
linear power, on a map grid). Items whose ``sar:product_type`` is GRD or SLC hold detected
amplitude or complex samples in radar geometry; :func:`check_s1_products` refuses them with a
message saying how to get RTC. A band whose ``raster:bands`` unit is decibels is converted to
linear power (``10 ** (dB / 10)``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import ModalitySpec
from xterrafm.errors import BandNotFoundError, InputError
from xterrafm.io.stac_items import parse_time

with import_gate():
    import numpy as np
    import pystac

__all__ = [
    "BASELINE_04_START",
    "DB_UNITS",
    "BandCalibration",
    "band_calibration",
    "calibration_arrays",
    "check_s1_products",
    "find_asset",
    "group_items_by_crs",
    "item_calibrations",
    "item_crs",
    "raster_band",
]

#: First day of Sentinel-2 processing baseline 04.00 (fallback when an item has no baseline).
BASELINE_04_START = dt.datetime(2022, 1, 25, tzinfo=dt.timezone.utc)

#: Units strings that mean decibels (compared lower-case).
DB_UNITS = ("db", "decibel", "decibels")

_S2_SCALE = 1e-4
_S2_BASELINE_OFFSET_DN = -1000.0

#: How to get Sentinel-1 RTC, said whenever something else is refused.
RTC_ADVICE = (
    "TerraFM's radar stem was trained on Sentinel-1 RTC: radiometrically terrain-corrected "
    "gamma0 backscatter in linear power on a map grid (VV, VH). Use an RTC collection, e.g. "
    "Microsoft Planetary Computer 'sentinel-1-rtc', 'Sentinel-1 RTC' on AWS "
    "(sentinel-s1-rtc-indigo) or OPERA RTC-S1 / ASF HyP3 RTC products (power scale), or "
    "process the GRD to RTC yourself (e.g. SNAP: calibration to beta0, terrain flattening, "
    "range-Doppler terrain correction, linear output)")


@dataclass(frozen=True)
class BandCalibration:
    """How one band of one item becomes physical units.

    ``value = DN * scale + offset``, then ``10 ** (value / 10)`` when ``db`` (decibels to
    linear power); ``nodata`` pixels become NaN first.
    """

    scale: float
    offset: float
    nodata: float | None
    source: str  # "raster:bands", "s2:processing_baseline", "acquisition date", "none"
    db: bool = False


# -- assets -----------------------------------------------------------------------------------
def _asset_band_entries(asset: pystac.Asset) -> list[Mapping[str, Any]]:
    fields = asset.extra_fields
    return list(fields.get("eo:bands") or fields.get("bands") or [])


def _asset_names(asset: pystac.Asset) -> tuple[list[str], list[str]]:
    """(band names, common names) that an asset declares (eo:bands or STAC 1.1 bands)."""
    names, commons = [], []
    for b in _asset_band_entries(asset):
        if b.get("name"):
            names.append(str(b["name"]))
        cn = b.get("common_name") or b.get("eo:common_name")
        if cn:
            commons.append(str(cn))
    return names, commons


def _media_rank(asset: pystac.Asset) -> int:
    mt = (asset.media_type or "").lower()
    if "cloud-optimized" in mt:
        return 0
    if "tiff" in mt or asset.href.lower().endswith((".tif", ".tiff")):
        return 1
    if "jp2" in mt or asset.href.lower().endswith(".jp2"):
        return 3
    return 2


def find_asset(item: pystac.Item, names: Sequence[str], label: str) -> str | None:
    """Key of the asset that holds band ``label`` (known under ``names``), or None.

    Preference: asset key match, then ``eo:bands`` name, then common name; ties go to COGs.
    """
    wanted = {n.lower() for n in names}
    best: tuple[int, int, str] | None = None
    for key, asset in item.assets.items():
        bnames, commons = _asset_names(asset)
        if key.lower() in wanted:
            prio = 0
        elif any(n.lower() in wanted for n in bnames):
            prio = 1
        elif any(n.lower() in wanted for n in commons):
            prio = 2
        else:
            continue
        cand = (prio, _media_rank(asset), key)
        if best is None or cand < best:
            best = cand
    return None if best is None else best[2]


def raster_band(asset: pystac.Asset) -> dict[str, Any]:
    """The first ``raster:bands`` entry of an asset (STAC 1.1: raster fields of ``bands[0]``)."""
    rb = asset.extra_fields.get("raster:bands")
    if rb:
        return dict(rb[0])
    bands = asset.extra_fields.get("bands")
    fields = asset.extra_fields
    out: dict[str, Any] = {}
    if bands:  # STAC 1.1: raster fields inside bands[] with a "raster:" prefix
        b = bands[0]
        out = {k.split(":", 1)[1]: v for k, v in b.items() if k.startswith("raster:")}
        if "nodata" in b:
            out["nodata"] = b["nodata"]
    # STAC 1.1 also allows the raster fields on the asset itself
    for key in ("scale", "offset", "unit"):
        if f"raster:{key}" in fields and key not in out:
            out[key] = fields[f"raster:{key}"]
    if "nodata" in fields and "nodata" not in out:
        out["nodata"] = fields["nodata"]
    return out


# -- calibration ------------------------------------------------------------------------------
def _baseline(item: pystac.Item) -> float | None:
    props = item.properties
    for key in ("s2:processing_baseline", "processing:version", "processing_baseline"):
        if props.get(key) not in (None, ""):
            try:
                return float(str(props[key]).strip().lstrip("N").replace("_", "."))
            except ValueError:
                continue
    return None


def band_calibration(item: pystac.Item, asset: pystac.Asset,
                     spec: ModalitySpec) -> BandCalibration:
    """The calibration of one band of ``item``, read from ``asset`` (see the module docstring).

    Nodata defaults to 0 for Sentinel-2 digital numbers and NaN for Sentinel-1 when the asset
    declares none.
    """
    rb = raster_band(asset)
    nodata = rb.get("nodata")
    if isinstance(nodata, str):
        nodata = float(nodata)  # "nan", "inf"
    optical = spec.name.startswith("s2")
    if nodata is None:
        nodata = 0.0 if optical else float("nan")
    db = str(rb.get("unit", "")).strip().lower() in DB_UNITS
    if "scale" in rb or "offset" in rb:
        return BandCalibration(float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0)),
                               nodata, "raster:bands", db)
    if not optical:
        return BandCalibration(1.0, 0.0, nodata, "raster:bands unit" if db else "none", db)
    baseline = _baseline(item)
    if baseline is not None:
        off = _S2_BASELINE_OFFSET_DN if baseline >= 4.0 else 0.0
        return BandCalibration(_S2_SCALE, off * _S2_SCALE, nodata, "s2:processing_baseline")
    t = item.datetime or parse_time(item.properties.get("start_datetime"), end=False)
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    off = _S2_BASELINE_OFFSET_DN if (t is not None and t >= BASELINE_04_START) else 0.0
    return BandCalibration(_S2_SCALE, off * _S2_SCALE, nodata, "acquisition date")


def item_calibrations(item: pystac.Item, spec: ModalitySpec,
                      asset_keys: Mapping[str, str] | None = None
                      ) -> dict[str, BandCalibration]:
    """The calibration of every band of ``spec`` in ``item``.

    Parameters
    ----------
    item : pystac.Item
    spec : ModalitySpec
    asset_keys : mapping, optional
        ``{band: name}`` the input used for a band (e.g. the odc-stac variable name); an asset
        of that key wins over the band's aliases.

    Raises
    ------
    BandNotFoundError
        An item has no asset for a band (names band, item and its asset keys).
    """
    out = {}
    for b in spec.bands:
        names = (b.name, *b.aliases)
        key = None
        if asset_keys and asset_keys.get(b.name) in item.assets:
            key = asset_keys[b.name]
        key = key or find_asset(item, names, b.name)
        if key is None:
            raise BandNotFoundError(
                f"band {b.name!r} of modality {spec.name!r} not found in STAC item {item.id!r}; "
                f"looked for asset keys / eo:bands names / common names {list(names)}; the item "
                f"has asset keys {sorted(item.assets)}")
        out[b.name] = band_calibration(item, item.assets[key], spec)
    return out


def calibration_arrays(
    items: Sequence[pystac.Item], cals: Sequence[Mapping[str, BandCalibration]],
    bands: Sequence[str], times: np.ndarray, groupby: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Scale and offset as ``(time, band)`` float64 arrays, nodata per band, the sources used.

    Items whose calibrations all agree apply to every time step; otherwise each time step
    takes the calibration of the items at that time (``groupby="time"`` only).

    Raises
    ------
    InputError
        Items that disagree on nodata, or on scale/offset in a way that cannot be assigned
        to the time steps.
    """
    nb = len(bands)
    per_item = np.array([[(c[b].scale, c[b].offset) for b in bands] for c in cals])
    nodata = np.array([np.nan if cals[0][b].nodata is None else cals[0][b].nodata
                       for b in bands], dtype="float64")
    for it, c in zip(items, cals, strict=True):
        nd = np.array([np.nan if c[b].nodata is None else c[b].nodata for b in bands],
                      dtype="float64")
        if not np.array_equal(nd, nodata, equal_nan=True):
            raise InputError(f"item {it.id!r} declares different nodata values {nd} than "
                             f"item {items[0].id!r} ({nodata}); load them separately")
    sources = sorted({c[b].source for c in cals for b in bands})
    if (per_item == per_item[0]).all():
        scale = np.broadcast_to(per_item[0, :, 0], (len(times), nb))
        offset = np.broadcast_to(per_item[0, :, 1], (len(times), nb))
        return scale.astype("float64"), offset.astype("float64"), nodata, sources
    if groupby != "time":
        raise InputError(
            "the items have different scale/offset (e.g. mixed processing baselines); with "
            f"groupby={groupby!r} xterrafm cannot assign them to time steps. Use groupby='time' "
            "or load the groups separately.")
    item_t = np.array([np.datetime64(it.datetime.astimezone(dt.timezone.utc)
                                     .replace(tzinfo=None), "ns") for it in items])
    scale = np.empty((len(times), nb), "float64")
    offset = np.empty((len(times), nb), "float64")
    for ti, t in enumerate(np.asarray(times).astype("datetime64[ns]")):
        sel = per_item[item_t == t]
        if len(sel) == 0 or not (sel == sel[0]).all():
            raise InputError(f"items at time {t} disagree on scale/offset (or no item has that "
                             "time); load them separately")
        scale[ti], offset[ti] = sel[0, :, 0], sel[0, :, 1]
    return scale, offset, nodata, sources


# -- projection and product -------------------------------------------------------------------
def item_crs(item: Any) -> str | None:
    """``"EPSG:<code>"`` (or the ``proj:code`` text) of an item, from item or asset metadata."""
    candidates = [item.properties]
    candidates += [asset.extra_fields for asset in item.assets.values()]
    for props in candidates:
        code = props.get("proj:code")
        if code:
            return str(code)
        epsg = props.get("proj:epsg")
        if epsg:
            return f"EPSG:{int(epsg)}"
    return None


def group_items_by_crs(items: Sequence[Any]) -> dict[str | None, list[Any]]:
    """Group STAC items by :func:`item_crs` (``None`` for items without projection metadata).

    Returns
    -------
    dict
        Ordered by CRS text; items keep their order within a group.
    """
    groups: dict[str | None, list[Any]] = defaultdict(list)
    for item in items:
        groups[item_crs(item)].append(item)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0]))))


def check_s1_products(items: Sequence[pystac.Item]) -> None:
    """Refuse Sentinel-1 items that are not RTC (GRD, SLC, OCN), naming item and product.

    Raises
    ------
    InputError
        An item whose ``sar:product_type`` (or ``s1:product_type``) is not RTC.
    """
    for item in items:
        props = item.properties
        product = str(props.get("sar:product_type") or props.get("s1:product_type") or "")
        kind = product.strip().upper()
        if not kind or "RTC" in kind or kind in ("NRB", "CARD-BS", "CARD4L"):
            continue  # terrain-flattened analysis-ready backscatter, or not said
        what = {
            "GRD": "Ground Range Detected amplitude in radar geometry (slant/ground range with "
                   "GCPs, no terrain flattening, digital numbers before calibration)",
            "SLC": "Single Look Complex samples in radar geometry",
            "OCN": "an ocean (wind/wave) product",
            "GTC": "geocoded backscatter without radiometric terrain correction (sigma0 on "
                   "the ellipsoid, not terrain-flattened gamma0)",
        }.get(kind[:3], f"product type {product!r}")
        geometry = item_crs(item)
        raise InputError(
            f"STAC item {item.id!r} is Sentinel-1 {product}: {what}"
            + (f"; its {geometry} projection metadata describes the footprint, not a pixel grid"
               if geometry == "EPSG:4326" else "")
            + f". {RTC_ADVICE}.")
