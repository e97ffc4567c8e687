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

Calibration (Sentinel-2 harmonisation, decibels, nodata) is read from the items by
:mod:`xterrafm.io.stac_calibration`; see there. Items on several CRSs are refused unless
``crs=`` says which one to reproject into (:func:`load_stac_per_crs` gives one cube per CRS),
and Sentinel-1 items that are not RTC (GRD, SLC) are refused with a message saying how to get
RTC.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from xterrafm._imports import import_gate
from xterrafm.bands import ModalitySpec, get_modality
from xterrafm.errors import BandNotFoundError, InputError, UsageError
from xterrafm.io.band_stack import stack_calibrated
from xterrafm.io.retry import RetryingRioDriver, RetryPolicy, coerce_retry
from xterrafm.io.stac_calibration import (
    BASELINE_04_START,
    BandCalibration,
    band_calibration,
    calibration_arrays,
    check_s1_products,
    find_asset,
    group_items_by_crs,
    raster_band,
)
from xterrafm.io.stac_items import resolve_items

with import_gate():
    import numpy as np
    import odc.geo.xr  # noqa: F401  (registers .odc on the cubes returned)
    import pystac
    import rasterio
    import rioxarray  # noqa: F401  (registers .rio on the cubes returned)
    import xarray as xr
    from pystac.utils import make_absolute_href

__all__ = ["BASELINE_04_START", "DEFAULT_CHUNK_PX", "DEFAULT_SCL_MASK_CLASSES", "load_stac",
           "load_stac_per_crs"]

#: Default y/x chunk size in pixels: 5 x 224, so chunks hold whole 224 px model tiles.
DEFAULT_CHUNK_PX = 1120

#: SCL classes masked by ``mask_clouds=True``: 3 cloud shadow, 8 cloud medium probability,
#: 9 cloud high probability, 10 thin cirrus.
DEFAULT_SCL_MASK_CLASSES: tuple[int, ...] = (3, 8, 9, 10)


# --------------------------------------------------------------------------------------------
# Items with one asset per band


def _canonical_item(
    item: pystac.Item, base_href: str | None, spec: ModalitySpec, with_scl: bool
) -> tuple[pystac.Item, dict[str, BandCalibration]]:
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
    cals: dict[str, BandCalibration] = {}
    for name, aliases in wanted:
        key = find_asset(item, aliases, name)
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
            cals[name] = band_calibration(item, src, spec)
            rb = {k: v for k, v in raster_band(src).items() if k not in ("scale", "offset")}
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


def _check_one_crs(items: Sequence[pystac.Item]) -> None:
    """Refuse items on several CRSs (``crs=`` not given): one cube would reproject them all."""
    groups = group_items_by_crs(items)
    if len(groups) <= 1:
        return
    listing = ", ".join(f"{crs or 'no projection metadata'}: {len(g)} item(s)"
                        for crs, g in groups.items())
    raise UsageError(
        f"the items are on {len(groups)} CRSs ({listing}); one cube would reproject them all "
        "into one of them (mostly empty, resampled). Load one cube per CRS with "
        "xterrafm.io.load_stac_per_crs (python -m xterrafm embed does this), select the items "
        "of one CRS, or pass crs= to reproject all of them into that CRS.")


def _db_bands(items: Sequence[pystac.Item], cals: Sequence[Mapping[str, BandCalibration]],
              bands: Sequence[str]) -> np.ndarray:
    """Which bands are in decibels (``raster:bands`` unit); the items must agree."""
    flags = {tuple(c[b].db for b in bands) for c in cals}
    if len(flags) > 1:
        raise InputError(f"the items disagree on which bands are in decibels ({sorted(flags)}); "
                         "load them separately")
    return np.array(flags.pop(), dtype=bool)


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
        ``"acquisition date"`` or ``"none"``), ``db_to_linear`` (bands whose ``raster:bands``
        unit was decibels, converted to linear power), ``harmonized`` (whether a baseline offset was
        applied, 0/1), ``nodata_to_nan`` (1), ``source_nodata`` (per band), ``resampling``,
        ``cloud_mask`` (``"none"`` or ``"scl:3,8,9,10"``), ``fill_failed`` (0/1), ``reader``.
        ``item_ids`` lists every item loaded, in load order; with ``groupby="time"`` several
        items (tiles of one pass) may share a time step. Attribute values are JSON-friendly
        (str, int, float, lists), so they survive Zarr.

    Raises
    ------
    BandNotFoundError
        A band is missing in an item (names the band, the item and its asset keys).
    UsageError
        The items are on several CRSs and ``crs=`` (or ``geobox=``/``like=``) does not say
        which grid to reproject them into; :func:`load_stac_per_crs` loads one cube per CRS.
    InputError
        Sentinel-1 items that are not RTC (``sar:product_type`` GRD, SLC...), or items that
        disagree on nodata or on a calibration that cannot be assigned to time steps.
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
    if spec.name == "s1":
        check_s1_products([item for item, _ in pairs])
    if crs is None and not any(k in kwargs for k in ("geobox", "like")):
        _check_one_crs([item for item, _ in pairs])
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

    scale, offset, nodata, sources = calibration_arrays(
        canon, cals, bands, ds["time"].values, groupby)
    db = _db_bands(canon, cals, bands)
    # one task per block: each band written once, calibrated, into the block's (T, B, y, x)
    data = stack_calibrated(
        [ds[b].transpose("time", "y", "x").data for b in bands], scale=scale, offset=offset,
        nodata=nodata, db=db, scl=ds["SCL"].transpose("time", "y", "x").data if mask_clouds
        else None, mask_classes=tuple(scl_mask_classes) if mask_clouds else ())
    first = ds[bands[0]].transpose("time", "y", "x")
    cube = xr.DataArray(data, dims=("time", "band", "y", "x"), coords=first.coords)
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
        "db_to_linear": [b for b, d in zip(bands, db, strict=True) if d],
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


def load_stac_per_crs(source: Any, *, modality: str, bbox: Sequence[float] | None = None,
                      datetime: Any = None, collections: Sequence[str] | str | None = None,
                      search_kwargs: Mapping[str, Any] | None = None, **kwargs: Any,
                      ) -> dict[str, xr.DataArray]:
    """One :func:`load_stac` cube per CRS of the items, each on its native grid.

    Takes the arguments of :func:`load_stac` (except ``crs``, which each group sets to its
    own). Items without projection metadata form their own group, loaded with odc-stac's
    default grid.

    Returns
    -------
    dict
        ``{"EPSG:32632": cube, "EPSG:32633": cube, ...}`` in CRS order.
    """
    if "crs" in kwargs:
        raise UsageError("load_stac_per_crs loads every CRS on its own grid; crs= is not taken "
                         "(use load_stac(..., crs=...) to reproject all items into one CRS)")
    pairs = resolve_items(source, bbox=bbox, datetime=datetime, collections=collections,
                          search_kwargs=search_kwargs, retry=coerce_retry(kwargs.get("retry")))
    items = []
    for item, base in pairs:  # absolute hrefs, so that each group loads on its own
        item = item.clone()
        for asset in item.assets.values():
            asset.href = make_absolute_href(asset.href, base) if base else asset.href
        items.append(item)
    cubes = {}
    for crs, group in group_items_by_crs(items).items():
        cube = load_stac(group, modality=modality, bbox=bbox, crs=crs, **kwargs)
        if crs is None:
            got = cube.odc.geobox.crs
            crs = f"EPSG:{got.epsg}" if got.epsg is not None else got.to_wkt()
        cubes[str(crs)] = cube
    return cubes
