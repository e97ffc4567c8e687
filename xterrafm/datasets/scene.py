"""Deterministic synthetic Sentinel-1/Sentinel-2 scenes written as COGs with static STAC metadata.

A scene is a land-cover map of ESA WorldCover classes on a 10 m UTM grid and, for each date,
the Sentinel-2 L2A and L1C bands at their native resolution (10/20/60 m), the L2A scene
classification (SCL) and Sentinel-1 RTC VV/VH backscatter. Pixel values follow the land-cover
class (:mod:`xterrafm.datasets.signatures`) with texture, per-date change, speckle and noise,
so classes are separable. Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.bands import S1, S2_L2A, check_modality
from xterrafm.datasets.cog import write_cog
from xterrafm.datasets.landcover import make_landcover
from xterrafm.datasets.scene_pixels import (
    RNG_LANDCOVER,
    S2_DN_OFFSET,
    pixel_grid,
    rng_stream,
    write_s1_rasters,
    write_s2_rasters,
)
from xterrafm.datasets.stac import (
    S2_EARTHSEARCH_KEYS,
    AssetFile,
    make_item,
    write_catalog,
    write_item_collection,
)

with import_gate():
    import numpy as np
    from affine import Affine
    from odc.geo.geobox import GeoBox

__all__ = ["PROCESSING_BASELINE", "S2_DN_OFFSET", "SyntheticScene", "make_synthetic_scene"]

#: File in a scene's folder recording the arguments it was written with.
_PARAMS_FILE = "scene.json"

#: Processing baseline written to the Sentinel-2 items (>= 04.00: DN carry a +1000 offset).
PROCESSING_BASELINE = "05.10"

_DEFAULT_START = datetime(2024, 6, 1, 10, 30, 21, tzinfo=timezone.utc)
_ALL_MODALITIES = ("s2_l2a", "s2_l1c", "s1")


@dataclass(frozen=True)
class SyntheticScene:
    """What :func:`make_synthetic_scene` wrote, with the ground truth needed by tests.

    Attributes
    ----------
    root : pathlib.Path
        Folder holding ``data/`` (COGs) and ``stac/`` (JSON).
    crs : str
        CRS of every raster, e.g. ``"EPSG:32632"``.
    geobox : odc.geo.geobox.GeoBox
        The 10 m grid, ``height x width`` px; 20 m and 60 m rasters share its origin.
    dates : list of datetime.datetime
        Acquisition times (UTC), one per date index; all modalities use the same times.
    modalities : tuple of str
        Modalities written (subset of ``("s2_l2a", "s2_l1c", "s1")``).
    seed : int
        Seed the scene is a function of.
    item_collections : dict of str to pathlib.Path
        ItemCollection JSON files: ``"s2_l2a"`` (asset keys ``B02``..., offset only through
        ``s2:processing_baseline``), ``"s2_l2a_earthsearch"`` (keys ``blue``/``nir08``...,
        ``raster:bands`` scale 1e-4 / offset -0.1), ``"s2_l1c"`` (keys ``B02``..., with scale /
        offset), ``"s1"`` (keys ``vv``/``vh``), ``"landcover"`` (key ``map``). Asset hrefs are
        relative to the JSON file's folder.
    catalog : pathlib.Path
        Self-contained static ``catalog.json`` (relative links and asset hrefs) with one
        collection per ItemCollection: ``sentinel-2-l2a``, ``sentinel-2-l2a-earthsearch``,
        ``sentinel-2-l1c``, ``sentinel-1-rtc``, ``esa-worldcover``.
    band_paths : dict
        ``band_paths[modality][date_index][band] -> COG path`` with canonical band names
        (``"B01"``...``"B12"``, ``"VV"``, ``"VH"``). S2: uint16 DN = reflectance * 10000 + 1000 at
        native resolution, nodata 0. S1: float32 linear power (gamma0), nodata NaN.
    scl_paths : dict of int to pathlib.Path
        L2A scene classification per date index (uint8, 20 m, 0 = nodata, 8/9 = clouds).
    landcover_path : pathlib.Path
        uint8 COG of WorldCover classes on the 10 m grid (nodata 0, never present).
    landcover : numpy.ndarray, shape (height, width), uint8
        The land-cover map.
    item_ids : dict of str to list of str
        Item ids per ItemCollection key, in date order.
    nodata_masks : dict
        ``nodata_masks[modality][date_index]``: bool (height, width), True where the 10 m
        rasters hold nodata (S2 orbit-edge wedge, S1 swath-edge strip; only on ``nodata_date``).
    cloud_masks : dict of int to numpy.ndarray
        bool (height, width) per date index, True where clouds (SCL 8 or 9 at 10 m) cover S2.
    nodata_date : int or None
        Date index carrying the nodata areas, or None.
    processing_baseline : str
        ``s2:processing_baseline`` of the S2 items.
    """

    root: Path
    crs: str
    geobox: GeoBox
    dates: list[datetime]
    modalities: tuple[str, ...]
    seed: int
    item_collections: dict[str, Path]
    catalog: Path
    band_paths: dict[str, dict[int, dict[str, Path]]]
    scl_paths: dict[int, Path]
    landcover_path: Path
    landcover: np.ndarray
    item_ids: dict[str, list[str]]
    nodata_masks: dict[str, dict[int, np.ndarray]]
    cloud_masks: dict[int, np.ndarray]
    nodata_date: int | None
    processing_baseline: str = PROCESSING_BASELINE

    @property
    def width(self) -> int:
        """Width of the 10 m grid in pixels."""
        return int(self.geobox.shape.x)

    @property
    def height(self) -> int:
        """Height of the 10 m grid in pixels."""
        return int(self.geobox.shape.y)

    @property
    def classes(self) -> list[int]:
        """WorldCover classes present in the land-cover map, ascending."""
        return [int(c) for c in np.unique(self.landcover)]


def _check_args(
    width: int, height: int, n_dates: int, seed: int, modalities: Sequence[str], crs: str
) -> tuple[tuple[str, ...], GeoBox]:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or v < 16:
            raise ValueError(f"{name} must be an integer >= 16 pixels, got {v!r}")
    if not isinstance(n_dates, (int, np.integer)) or n_dates < 1:
        raise ValueError(f"n_dates must be a positive integer, got {n_dates!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(modalities, str):
        modalities = (modalities,)
    mods = tuple(dict.fromkeys(check_modality(m) for m in modalities))
    if not mods:
        raise ValueError(f"modalities must name at least one of {_ALL_MODALITIES}")
    probe = GeoBox((1, 1), Affine(10, 0, 0, 0, -10, 0), crs)
    if probe.crs.units[0] not in ("metre", "m", "meter"):
        raise ValueError(f"crs must be a projected CRS in metres (e.g. a UTM zone), got {crs!r}")
    return mods, probe


def make_synthetic_scene(
    path: str | Path,
    *,
    seed: int = 0,
    width: int = 448,
    height: int = 448,
    n_dates: int = 2,
    crs: str = "EPSG:32632",
    modalities: Sequence[str] = _ALL_MODALITIES,
    origin: tuple[float, float] = (600000.0, 5100000.0),
    start: datetime = _DEFAULT_START,
    date_step_days: int = 10,
    nodata_date: int | None = -1,
    cloud_fraction: float = 0.01,
    overwrite: bool = False,
) -> SyntheticScene:
    """Write a deterministic synthetic Sentinel-1/Sentinel-2 scene with static STAC metadata.

    Parameters
    ----------
    path : str or pathlib.Path
        Output folder; ``data/`` and ``stac/`` are created inside it.
    seed : int
        Seed; equal seeds and arguments give byte-identical pixels.
    width, height : int
        Size of the 10 m grid in pixels (>= 16).
    n_dates : int
        Number of acquisition dates.
    crs : str
        A projected CRS in metres (UTM), e.g. ``"EPSG:32632"``.
    modalities : sequence of str
        Any of ``"s2_l2a"``, ``"s2_l1c"``, ``"s1"``. The land-cover map is always written.
    origin : (float, float)
        Upper-left corner (x, y) in CRS metres; keep it a multiple of 60 m so that the
        10/20/60 m grids nest as in Sentinel-2 tiles.
    start : datetime.datetime
        First acquisition time (UTC).
    date_step_days : int
        Days between acquisitions.
    nodata_date : int or None
        Date index (negative counts from the end) whose rasters get the nodata areas:
        an orbit-edge wedge in S2 (DN 0, SCL 0) and a swath-edge strip in S1 (NaN).
        None: no nodata anywhere.
    cloud_fraction : float
        Approximate fraction of each S2 date covered by small clouds (SCL 8/9), 0..0.5.
    overwrite : bool
        Replace ``data/`` and ``stac/`` of an earlier scene in ``path``. Without it, an
        earlier scene written with the same arguments (recorded in ``scene.json``) is written
        again (the same bytes), and any other earlier content raises ``FileExistsError`` and
        is left untouched.

    Returns
    -------
    SyntheticScene
    """
    mods, _ = _check_args(width, height, n_dates, seed, modalities, crs)
    if not 0.0 <= cloud_fraction <= 0.5:
        raise ValueError(f"cloud_fraction must be within [0, 0.5], got {cloud_fraction!r}")
    if nodata_date is not None:
        if not -n_dates <= nodata_date < n_dates:
            raise ValueError(f"nodata_date {nodata_date} is outside the {n_dates} dates")
        nodata_date %= n_dates
    root = Path(path).resolve()
    params = {"seed": int(seed), "width": int(width), "height": int(height),
              "n_dates": int(n_dates), "crs": str(crs), "modalities": list(mods),
              "origin": [float(v) for v in origin], "start": start.isoformat(),
              "date_step_days": int(date_step_days), "nodata_date": nodata_date,
              "cloud_fraction": float(cloud_fraction)}
    record = root / _PARAMS_FILE
    earlier = json.loads(record.read_text()) if record.exists() else None
    for sub in ("data", "stac"):
        if (root / sub).exists():
            if not overwrite and earlier != params:
                said = "another scene" if earlier is not None else "an earlier scene?"
                raise FileExistsError(
                    f"{root / sub} exists ({said}); pass overwrite=True to replace it, or the "
                    "same arguments to write the same scene again")
            shutil.rmtree(root / sub)  # the same arguments write the same bytes
    root.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(params, indent=1))

    x0, y0 = map(float, origin)
    geobox = pixel_grid(x0, y0, 10.0, height, width, crs)
    hp, wp = -(-height // 6) * 6, -(-width // 6) * 6  # padded so 20/60 m blocks are whole
    dates = [start + timedelta(days=date_step_days * i) for i in range(n_dates)]
    datestr = [d.strftime("%Y%m%d") for d in dates]

    lc_pad = make_landcover(rng_stream(seed, RNG_LANDCOVER), (hp, wp))
    landcover = np.ascontiguousarray(lc_pad[:height, :width])
    lc_path = write_cog(root / "data" / "landcover" / "landcover.tif", landcover, geobox, 0,
                        overview_resampling="nearest")

    band_paths: dict[str, dict[int, dict[str, Path]]] = {m: {} for m in mods}
    scl_paths: dict[int, Path] = {}
    nodata_masks: dict[str, dict[int, np.ndarray]] = {m: {} for m in mods}
    cloud_masks: dict[int, np.ndarray] = {}
    cloud_pct: dict[int, float] = {}
    grids = {r: pixel_grid(x0, y0, r, height, width, crs) for r in (10.0, 20.0, 60.0)}

    if "s2_l2a" in mods or "s2_l1c" in mods:
        write_s2_rasters(root, seed, mods, lc_pad, grids, height, width, datestr, nodata_date,
                  cloud_fraction, band_paths, scl_paths, nodata_masks, cloud_masks, cloud_pct)
    if "s1" in mods:
        write_s1_rasters(root, seed, lc_pad, grids[10.0], height, width, datestr, nodata_date,
                  band_paths, nodata_masks)

    items = _build_items(seed, mods, geobox, grids, dates, datestr, band_paths, scl_paths,
                         lc_path, cloud_pct)
    stac_dir = root / "stac"
    item_collections = {
        key: write_item_collection(its, stac_dir / "item_collections" / f"{key}.json")
        for key, (_, _, its) in items.items()
    }
    catalog = write_catalog(
        stac_dir,
        {cid: (desc, its) for cid, desc, its in items.values()},
        catalog_id=f"xterrafm-synthetic-seed{seed}",
        description=f"xterrafm synthetic scene, seed {seed}, {width}x{height} px, {n_dates} dates",
    )
    return SyntheticScene(
        root=root,
        crs=str(geobox.crs),
        geobox=geobox,
        dates=dates,
        modalities=mods,
        seed=int(seed),
        item_collections=item_collections,
        catalog=catalog,
        band_paths=band_paths,
        scl_paths=scl_paths,
        landcover_path=lc_path,
        landcover=landcover,
        item_ids={k: [it.id for it in v[2]] for k, v in items.items()},
        nodata_masks=nodata_masks,
        cloud_masks=cloud_masks,
        nodata_date=nodata_date,
    )


def _build_items(
    seed: int,
    mods: tuple[str, ...],
    geobox: GeoBox,
    grids: dict[float, GeoBox],
    dates: list[datetime],
    datestr: list[str],
    band_paths: dict,
    scl_paths: dict,
    lc_path: Path,
    cloud_pct: dict,
) -> dict[str, tuple[str, str, list]]:
    """STAC items per ItemCollection key: ``{key: (collection id, description, items)}``."""
    out: dict[str, tuple[str, str, list]] = {}
    s2_common = {
        "platform": "sentinel-2a",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "s2:processing_baseline": PROCESSING_BASELINE,
    }

    def s2_assets(m: str, d: int, style: str) -> list[AssetFile]:
        scaled = style == "earthsearch" or m == "s2_l1c"
        assets = []
        for spec in S2_L2A.bands:
            key = S2_EARTHSEARCH_KEYS[spec.name] if style == "earthsearch" else spec.name
            assets.append(AssetFile(
                key=key, path=band_paths[m][d][spec.name], band=spec.name,
                geobox=grids[spec.resolution], dtype="uint16", nodata=0,
                scale=1e-4 if scaled else None,
                offset=-S2_DN_OFFSET * 1e-4 if scaled else None,
                roles=("data", "reflectance"), eo_name=key))
        if m == "s2_l2a":
            key = S2_EARTHSEARCH_KEYS["SCL"] if style == "earthsearch" else "SCL"
            assets.append(AssetFile(key=key, path=scl_paths[d], band="SCL", geobox=grids[20.0],
                                    dtype="uint8", nodata=0, eo_name=key))
        return assets

    variants = [
        ("s2_l2a", "s2_l2a", "pc", "sentinel-2-l2a", "S2MSI2A",
         "Sentinel-2 L2A, Planetary-Computer-style asset keys (B02...), offset from baseline"),
        ("s2_l2a_earthsearch", "s2_l2a", "earthsearch", "sentinel-2-l2a-earthsearch", "S2MSI2A",
         "Sentinel-2 L2A, Earth-Search-style asset keys (blue, nir08...), raster:bands scale/offset"),
        ("s2_l1c", "s2_l1c", "pc", "sentinel-2-l1c", "S2MSI1C",
         "Sentinel-2 L1C top-of-atmosphere, asset keys B02..., raster:bands scale/offset"),
    ]
    for key, m, style, cid, ptype, desc in variants:
        if m not in mods:
            continue
        tag = key.replace("_", "-")
        items = [
            make_item(
                f"synthetic-{tag}-{datestr[d]}-seed{seed}", cid, dates[d], geobox,
                s2_assets(m, d, style),
                {**s2_common, "s2:product_type": ptype, "eo:cloud_cover": cloud_pct[d]},
            )
            for d in range(len(dates))
        ]
        for it in items:
            it.stac_extensions.append("https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json")
        out[key] = (cid, desc, items)
    if "s1" in mods:
        items = []
        for d in range(len(dates)):
            assets = [
                AssetFile(key=spec.name.lower(), path=band_paths["s1"][d][spec.name],
                          band=spec.name, geobox=grids[10.0], dtype="float32", nodata="nan",
                          eo_name=spec.name.lower())
                for spec in S1.bands
            ]
            item = make_item(
                f"synthetic-s1-rtc-{datestr[d]}-seed{seed}", "sentinel-1-rtc", dates[d], geobox,
                assets,
                {"platform": "sentinel-1a", "constellation": "sentinel-1", "instruments": ["c-sar"],
                 "sar:instrument_mode": "IW", "sar:frequency_band": "C",
                 "sar:polarizations": ["VV", "VH"], "sar:product_type": "RTC",
                 "sat:orbit_state": "ascending"},
            )
            item.stac_extensions += [
                "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
                "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
            ]
            items.append(item)
        out["s1"] = ("sentinel-1-rtc", "Sentinel-1 RTC gamma0, linear power, keys vv/vh", items)
    lc_item = make_item(
        f"synthetic-worldcover-seed{seed}", "esa-worldcover",
        datetime(dates[0].year, 1, 1, tzinfo=timezone.utc), geobox,
        [AssetFile(key="map", path=lc_path, band="map", geobox=geobox, dtype="uint8", nodata=0)],
        {"description": "synthetic ESA WorldCover classes 10..100"},
    )
    out["landcover"] = ("esa-worldcover", "Synthetic ESA WorldCover-like land cover", [lc_item])
    return out
