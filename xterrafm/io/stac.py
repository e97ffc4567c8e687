"""Lazy Sentinel-1/Sentinel-2 cubes from STAC items, through odc-stac.

:func:`load_stac` turns STAC items (from a list, an ItemCollection, a static catalog, an
ItemCollection JSON file or a STAC API search) into the xterrafm cube contract:

* a lazy, dask-backed :class:`xarray.DataArray` with dims ``(time, band, y, x)``;
* ``band`` holds the modality's bands in TerraFM order (:mod:`xterrafm.bands`);
* every band on one grid (default: the items' CRS at 10 m); 20 m and 60 m bands are resampled
  **bilinearly** (GDAL warp, nodata pixels excluded from the kernel) — smooth and unbiased for
  reflectance, while nearest would copy 2x2 / 6x6 blocks into the 10 m grid. The optional SCL
  layer is always resampled with nearest;
* float32 in physical units: Sentinel-2 reflectance ``DN * scale + offset``, Sentinel-1 linear
  power; nodata becomes NaN;
* the CRS kept in a ``spatial_ref`` coordinate, so ``cube.rio.crs`` and ``cube.odc.geobox`` work;
* attributes recording what was read and applied (see :func:`load_stac`).

Sentinel-2 harmonisation: since processing baseline 04.00 (25 January 2022) the digital numbers
carry a +1000 offset. Per item and band the offset is taken, in this order, from the asset's
``raster:bands`` scale/offset (Earth Search style; the offset there already includes the
baseline shift), else from ``s2:processing_baseline`` (``>= 04.00``: offset -1000 DN, i.e. -0.1
reflectance), else from the acquisition date. Exactly one of the three is used, so the offset is
never applied twice.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from xterrafm._imports import import_gate
from xterrafm.bands import ModalitySpec, get_modality
from xterrafm.errors import BandNotFoundError
from xterrafm.io.retry import RetryingRioDriver, RetryPolicy, coerce_retry
from xterrafm.io.stac_items import parse_time, resolve_items

with import_gate():
    import numpy as np
    import odc.geo.xr  # noqa: F401  (registers .odc on the cubes returned)
    import pystac
    import rasterio
    import rioxarray  # noqa: F401  (registers .rio on the cubes returned)
    import xarray as xr
    from pystac.utils import make_absolute_href

__all__ = ["DEFAULT_CHUNK_PX", "DEFAULT_SCL_MASK_CLASSES", "load_stac"]

#: Default y/x chunk size in pixels: 5 x 224, so chunks hold whole 224 px model tiles.
DEFAULT_CHUNK_PX = 1120

#: SCL classes masked by ``mask_clouds=True``: 3 cloud shadow, 8 cloud medium probability,
#: 9 cloud high probability, 10 thin cirrus.
DEFAULT_SCL_MASK_CLASSES: tuple[int, ...] = (3, 8, 9, 10)

#: First day of Sentinel-2 processing baseline 04.00 (fallback when an item has no baseline).
BASELINE_04_START = dt.datetime(2022, 1, 25, tzinfo=dt.timezone.utc)

_S2_SCALE = 1e-4
_S2_BASELINE_OFFSET_DN = -1000.0



@dataclass(frozen=True)
class _BandCalibration:
    """How one band of one item becomes physical units: ``value = DN * scale + offset``."""

    scale: float
    offset: float
    nodata: float | None
    source: str  # "raster:bands", "s2:processing_baseline", "acquisition date", "none"


# --------------------------------------------------------------------------------------------
# Asset names and calibration


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


def _find_asset(item: pystac.Item, names: Sequence[str], label: str) -> str | None:
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


def _raster_band(asset: pystac.Asset) -> dict[str, Any]:
    rb = asset.extra_fields.get("raster:bands")
    if rb:
        return dict(rb[0])
    bands = asset.extra_fields.get("bands")
    if bands:  # STAC 1.1: raster fields inside bands[] with a "raster:" prefix
        b = bands[0]
        return {k.split(":", 1)[1]: v for k, v in b.items() if k.startswith("raster:")} | (
            {"nodata": b["nodata"]} if "nodata" in b else {})
    return {}


def _baseline(item: pystac.Item) -> float | None:
    props = item.properties
    for key in ("s2:processing_baseline", "processing:version", "processing_baseline"):
        if props.get(key) not in (None, ""):
            try:
                return float(str(props[key]).strip().lstrip("N").replace("_", "."))
            except ValueError:
                continue
    return None


def _calibration(item: pystac.Item, asset: pystac.Asset, spec: ModalitySpec) -> _BandCalibration:
    rb = _raster_band(asset)
    nodata = rb.get("nodata")
    if isinstance(nodata, str):
        nodata = float(nodata)  # "nan", "inf"
    optical = spec.name.startswith("s2")
    if nodata is None:
        nodata = 0.0 if optical else float("nan")
    if "scale" in rb or "offset" in rb:
        return _BandCalibration(float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0)),
                                nodata, "raster:bands")
    if not optical:
        return _BandCalibration(1.0, 0.0, nodata, "none")
    baseline = _baseline(item)
    if baseline is not None:
        off = _S2_BASELINE_OFFSET_DN if baseline >= 4.0 else 0.0
        return _BandCalibration(_S2_SCALE, off * _S2_SCALE, nodata, "s2:processing_baseline")
    t = item.datetime or parse_time(item.properties.get("start_datetime"), end=False)
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    off = _S2_BASELINE_OFFSET_DN if (t is not None and t >= BASELINE_04_START) else 0.0
    return _BandCalibration(_S2_SCALE, off * _S2_SCALE, nodata, "acquisition date")


def _canonical_item(
    item: pystac.Item, base_href: str | None, spec: ModalitySpec, with_scl: bool
) -> tuple[pystac.Item, dict[str, _BandCalibration]]:
    """A copy of ``item`` with one asset per band, keyed by canonical name, absolute hrefs.

    Scale/offset are removed from the copies' ``raster:bands`` (xterrafm applies them itself)
    and nodata is set explicitly so the loader excludes it when resampling.
    """
    wanted: list[tuple[str, Sequence[str]]] = [
        (b.name, (b.name, *b.aliases)) for b in spec.bands
    ]
    if with_scl:
        wanted.append(("SCL", spec.extra_assets.get("SCL", ("SCL", "scl"))))
    new = pystac.Item(
        id=item.id, geometry=item.geometry, bbox=item.bbox, datetime=item.datetime,
        properties=copy.deepcopy(item.properties), collection=item.collection_id,
        stac_extensions=list(item.stac_extensions),
    )
    cals: dict[str, _BandCalibration] = {}
    for name, aliases in wanted:
        key = _find_asset(item, aliases, name)
        if key is None:
            raise BandNotFoundError(
                f"band {name!r} of modality {spec.name!r} not found in STAC item {item.id!r}; "
                f"looked for asset keys / eo:bands names / common names {list(aliases)}; "
                f"the item has asset keys {sorted(item.assets)} (collection "
                f"{item.collection_id!r}; if the source mixes collections, pass collections=)"
            )
        src = item.assets[key]
        href = src.href
        if base_href is not None:
            href = make_absolute_href(href, base_href)
        elif not (urlparse(href).scheme or os.path.isabs(href)):
            raise ValueError(
                f"asset {key!r} of item {item.id!r} has a relative href {href!r} and the item "
                "has no location to resolve it against"
            )
        fields = copy.deepcopy(src.extra_fields)
        if name != "SCL":
            cals[name] = _calibration(item, src, spec)
            rb = {k: v for k, v in _raster_band(src).items() if k not in ("scale", "offset")}
            nodata = cals[name].nodata
            rb["nodata"] = "nan" if nodata is not None and np.isnan(nodata) else nodata
            fields["raster:bands"] = [rb]
            fields.pop("bands", None)
        new.add_asset(name, pystac.Asset(href=href, media_type=src.media_type,
                                         roles=src.roles or ["data"], extra_fields=fields))
    return new, cals


# --------------------------------------------------------------------------------------------
# Loading


def _default_chunks(chunks: Mapping[str, int] | None) -> dict[str, int]:
    out = {"time": 1, "y": DEFAULT_CHUNK_PX, "x": DEFAULT_CHUNK_PX}
    if chunks:
        out.update({k: v for k, v in chunks.items() if k in ("time", "y", "x")})
    return out


def _calibration_arrays(
    items: list[pystac.Item], cals: list[dict[str, _BandCalibration]], bands: list[str],
    times: np.ndarray, groupby: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """scale, offset as (time, band) float64 arrays, nodata per band, and the sources used."""
    nb = len(bands)
    per_item = np.array([[(c[b].scale, c[b].offset) for b in bands] for c in cals])
    nodata = np.array([cals[0][b].nodata for b in bands], dtype="float64")
    for it, c in zip(items, cals, strict=True):
        nd = np.array([c[b].nodata for b in bands], dtype="float64")
        if not np.array_equal(nd, nodata, equal_nan=True):
            raise ValueError(f"item {it.id!r} declares different nodata values {nd} than "
                             f"item {items[0].id!r} ({nodata}); load them separately")
    sources = sorted({c[b].source for c in cals for b in bands})
    if (per_item == per_item[0]).all():
        scale = np.broadcast_to(per_item[0, :, 0], (len(times), nb))
        offset = np.broadcast_to(per_item[0, :, 1], (len(times), nb))
        return scale.astype("float64"), offset.astype("float64"), nodata, sources
    if groupby != "time":
        raise ValueError(
            "the items have different scale/offset (e.g. mixed processing baselines); with "
            f"groupby={groupby!r} xterrafm cannot assign them to time steps. Use groupby='time' "
            "or load the groups separately."
        )
    item_t = np.array([np.datetime64(it.datetime.astimezone(dt.timezone.utc)
                                     .replace(tzinfo=None), "ns") for it in items])
    scale = np.empty((len(times), nb), "float64")
    offset = np.empty((len(times), nb), "float64")
    for ti, t in enumerate(times.astype("datetime64[ns]")):
        sel = per_item[item_t == t]
        if len(sel) == 0 or not (sel == sel[0]).all():
            raise ValueError(f"items at time {t} disagree on scale/offset; load them separately")
        scale[ti], offset[ti] = sel[0, :, 0], sel[0, :, 1]
    return scale, offset, nodata, sources


def load_stac(
    source: Any,
    *,
    modality: str,
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    collections: Sequence[str] | str | None = None,
    resolution: float = 10,
    crs: Any = None,
    chunks: Mapping[str, int] | None = None,
    mask_clouds: bool = False,
    scl_mask_classes: Sequence[int] = DEFAULT_SCL_MASK_CLASSES,
    resampling: str = "bilinear",
    groupby: Any = "time",
    retry: RetryPolicy | int | None = None,
    fill_failed: bool = False,
    search_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Load Sentinel-1/2 STAC items as a lazy ``(time, band, y, x)`` cube in physical units.

    Parameters
    ----------
    source : list of pystac.Item, pystac.ItemCollection, pystac.Catalog, str or path
        Items; or a path/URL of a static catalog, a collection, an ItemCollection or an Item
        JSON; or the URL of a STAC API (searched with pystac-client using ``bbox``, ``datetime``,
        ``collections`` and ``search_kwargs``). Relative asset hrefs resolve against the
        item's own location (or the ItemCollection file's).
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"`` (aliases of :func:`xterrafm.bands.check_modality`).
    bbox : (min lon, min lat, max lon, max lat), optional
        Filters the items and limits the output extent.
    datetime : str, datetime or (start, end), optional
        STAC-API style time filter, e.g. ``"2023-01-01/2023-06-30"``.
    collections : str or list of str, optional
        Collection ids to keep.
    resolution : float
        Output pixel size in units of ``crs`` (metres for UTM); default 10.
    crs : str or CRS, optional
        Output CRS; default: the items' native CRS.
    chunks : dict, optional
        Dask chunks for ``time``, ``y`` and ``x``; default ``{"time": 1, "y": 1120, "x": 1120}``
        (multiples of 224 px). All bands always share one chunk.
    mask_clouds : bool
        Sentinel-2 L2A only: set pixels whose SCL class is in ``scl_mask_classes`` to NaN.
    scl_mask_classes : sequence of int
        SCL classes to mask; default cloud shadow (3), cloud medium/high (8, 9), cirrus (10).
    resampling : str
        Resampling of bands that are coarser (or finer) than the output grid; default
        ``"bilinear"``. SCL always uses ``"nearest"``.
    groupby : str
        How items become time steps (odc-stac ``groupby``): ``"time"`` (default), ``"id"``,
        ``"solar_day"``.
    retry : RetryPolicy, int or None
        Retry policy for failed reads (an int means that many attempts); see
        :mod:`xterrafm.io.retry`. Default :class:`RetryPolicy()`.
    fill_failed : bool
        If True, chunks whose reads keep failing become NaN (with a logged warning) instead of
        raising :class:`~xterrafm.io.retry.AssetReadError`.
    search_kwargs : mapping, optional
        Extra arguments for a STAC API search.
    **kwargs
        Passed to :func:`odc.stac.load` (e.g. ``x=``, ``y=``). ``geobox=`` or ``like=`` fix the
        output grid (``resolution``, ``crs`` and ``bbox`` are then not used): ``like=s2_cube``
        reads a Sentinel-1 cube on exactly a Sentinel-2 cube's pixels (warped with
        ``resampling``), as fused embeddings (``xterrafm.embed({"s1": ..., "s2_l2a": ...})``)
        need.

    Returns
    -------
    xarray.DataArray
        float32, dims ``(time, band, y, x)``, dask-backed, named after the modality.
        Coordinates ``time``, ``band``, ``y``, ``x``, ``spatial_ref``. Attributes:
        ``modality``, ``units`` (``"reflectance"`` / ``"linear_power"``), ``item_ids``,
        ``scale`` and ``offset`` (per band, as applied, from the first time step),
        ``calibration_source`` (``"raster:bands"``, ``"s2:processing_baseline"``,
        ``"acquisition date"`` or ``"none"``), ``harmonized`` (whether a baseline offset was
        applied, 0/1), ``nodata_to_nan`` (1), ``source_nodata`` (per band), ``resampling``,
        ``cloud_mask`` (``"none"`` or ``"scl:3,8,9,10"``), ``fill_failed`` (0/1), ``reader``.
        ``item_ids`` lists every item loaded, in load order; with ``groupby="time"`` several
        items (tiles of one pass) may share a time step. Attribute values are JSON-friendly
        (str, int, float, lists), so they survive Zarr.

    Raises
    ------
    BandNotFoundError
        A band is missing in an item (names the band, the item and its asset keys).
    AssetReadError
        At compute time, when a read keeps failing (names the href), unless ``fill_failed``.

    Notes
    -----
    Building the cube reads only STAC metadata, never pixels: nothing is computed.
    """
    with import_gate():
        import odc.stac

    spec = get_modality(modality)
    if mask_clouds and spec.name != "s2_l2a":
        raise ValueError(f"mask_clouds needs the SCL of Sentinel-2 L2A, not {spec.name!r}")
    policy = coerce_retry(retry)
    pairs = resolve_items(source, bbox=bbox, datetime=datetime, collections=collections,
                          search_kwargs=search_kwargs, retry=policy)
    canon, cals = [], []
    for item, base in pairs:
        new, cal = _canonical_item(item, base, spec, with_scl=mask_clouds)
        canon.append(new)
        cals.append(cal)
    bands = spec.band_names
    load_bands = bands + (["SCL"] if mask_clouds else [])
    load_kw: dict[str, Any] = dict(
        bands=load_bands,
        resolution=resolution,
        chunks=_default_chunks(chunks),
        dtype="float32",  # SCL too: small integers are exact; per-band dtypes break odc chunking
        resampling={b: resampling for b in bands} | ({"SCL": "nearest"} if mask_clouds else {}),
        groupby=groupby,
        fail_on_error=not fill_failed,
        driver=RetryingRioDriver(policy),
    )
    if any(k in kwargs for k in ("geobox", "like")):  # the grid is given: no crs/resolution
        load_kw.pop("resolution")
    elif crs is not None:
        load_kw["crs"] = crs
    if bbox is not None and not any(k in kwargs for k in ("geobox", "like", "x", "y")):
        load_kw["bbox"] = tuple(bbox)
    load_kw.update(kwargs)
    # odc-stac captures the active rasterio environment into the graph: the GDAL retry options
    # set here are restored around every read, on local threads and on distributed workers.
    with rasterio.Env(**policy.gdal_options()):
        ds = odc.stac.load(canon, **load_kw)

    scale, offset, nodata, sources = _calibration_arrays(
        canon, cals, bands, ds["time"].values, groupby)
    cube = ds[bands].to_dataarray("band").transpose("time", "band", "y", "x")
    nd = xr.DataArray(nodata.astype("float32"), dims="band")
    cube = cube.where(cube != nd)  # NaN != x is True: NaN nodata needs no masking
    s = xr.DataArray(scale.astype("float32"), dims=("time", "band"))
    o = xr.DataArray(offset.astype("float32"), dims=("time", "band"))
    cube = (cube * s + o).astype("float32")
    if mask_clouds:
        scl = ds["SCL"]
        cube = cube.where(~scl.isin(list(scl_mask_classes)))
    cube = cube.chunk({"band": -1})
    cube = cube.assign_coords(band=("band", bands),
                              time=("time", ds["time"].values.astype("datetime64[ns]")))
    cube.name = spec.name
    harmonized = bool(spec.name.startswith("s2") and np.any(offset != 0))
    cube.attrs = {
        "modality": spec.name,
        "units": spec.units,
        "item_ids": [it.id for it in canon],
        "scale": [float(v) for v in scale[0]],
        "offset": [float(v) for v in offset[0]],
        "calibration_source": ",".join(sources),
        "harmonized": int(harmonized),
        "nodata_to_nan": 1,
        "source_nodata": ["nan" if np.isnan(v) else float(v) for v in nodata],
        "resampling": resampling,
        "cloud_mask": ("scl:" + ",".join(str(c) for c in scl_mask_classes)) if mask_clouds
        else "none",
        "fill_failed": int(fill_failed),
        "reader": "xterrafm.io.load_stac (odc-stac)",
    }
    return cube
