"""Real catalogs' STAC items (tests/data/stac, see its README) with pixels written locally.

:func:`localize` copies an item and writes, for every band of a modality, a tiled GeoTIFF on the
asset's own grid (its ``proj:transform`` and ``proj:shape``, else the item's): the file has the
asset's full size, but only a small window holds pixels (sparse tiles, so a 10 980 px band is a
few kB). Values are digital numbers as the catalog describes them (Sentinel-2 uint16 with the
item's scale/offset, Sentinel-1 RTC float32 linear gamma0), with a nodata box. The asset hrefs
point at the local files; everything else in the item is kept as published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pystac
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

from xterrafm.bands import get_modality
from xterrafm.io.stac_calibration import band_calibration, find_asset

DATA = Path(__file__).resolve().parents[1] / "data" / "stac"

#: name -> (file under tests/data/stac, modality)
ITEMS = {
    "earth-search-v0-l2a": ("earth-search-v0_S2A_28QCH_20200714_0_L2A.json", "s2_l2a"),
    "planetary-computer-l2a": (
        "planetary-computer_S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json",
        "s2_l2a"),
    "stactools-l1c": ("stactools-sentinel2_S2A_T01LAC_20200717T221944_L1C.json", "s2_l1c"),
    "stactools-l2a": ("stactools-sentinel2_S2A_T07HFE_20190212T192646_L2A.json", "s2_l2a"),
    "stactools-s1-rtc": ("stactools-sentinel1_rtc_S1A_20200103_17RMJ_ASC.json", "s1"),
    "stactools-s1-grd": (
        "stactools-sentinel1_grd_S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_"
        "049F13.json", "s1"),
}


def read_item(name: str) -> pystac.Item:
    """The published item JSON, as pystac reads it."""
    path = DATA / ITEMS[name][0]
    item = pystac.Item.from_dict(json.loads(path.read_text()))
    item.set_self_href(str(path))
    return item


@dataclass(frozen=True)
class LocalItem:
    """An item whose band assets are local files.

    Attributes
    ----------
    item : pystac.Item
    modality : str
    bbox : (west, south, east, north) in degrees
        The written window (shrunk by a margin, so every band covers it).
    asset_keys : dict
        ``{band: asset key}`` of the written assets (what load_stac picks).
    crs : str
    """

    item: pystac.Item
    modality: str
    bbox: tuple[float, float, float, float]
    asset_keys: dict
    crs: str


def _grid(item: pystac.Item, asset: pystac.Asset) -> tuple[Affine, tuple[int, int], str]:
    fields = {**item.properties, **asset.extra_fields}
    t = fields["proj:transform"]
    shape = fields["proj:shape"]
    crs = fields.get("proj:code") or f"EPSG:{fields['proj:epsg']}"
    return Affine(*t[:6]), (int(shape[0]), int(shape[1])), str(crs)


def localize(name: str, folder: Path, *, side_m: float = 1920.0, seed: int = 0,
             units: str | None = None) -> LocalItem:
    """Write the bands of item ``name`` under ``folder`` and return the local item.

    Parameters
    ----------
    side_m : float
        Side of the written square window in metres (about the grid's middle).
    units : str, optional
        Set this ``raster:bands`` unit on the band assets (e.g. ``"dB"``) and write values in
        those units.
    """
    file, modality = ITEMS[name]
    spec = get_modality(modality)
    item = read_item(name).clone()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys, ref = {}, None
    for b in spec.bands:
        key = find_asset(item, (b.name, *b.aliases), b.name)
        keys[b.name] = key
        asset = item.assets[key]
        affine, (h, w), crs = _grid(item, asset)
        if ref is None:  # window in map units: about the middle of the item's footprint
            west, south, east, north = item.bbox[:4] if len(item.bbox) == 4 else \
                (item.bbox[0], item.bbox[1], item.bbox[3], item.bbox[4])
            to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
            cx, cy = to_crs.transform((west + east) / 2, (south + north) / 2)
            gx0, gy1 = affine @ (0, 0)
            gx1, gy0 = affine @ (w, h)
            cx = min(max(cx, gx0 + side_m), gx1 - side_m)
            cy = min(max(cy, gy0 + side_m), gy1 - side_m)
            ref = (cx - side_m / 2, cy - side_m / 2, cx + side_m / 2, cy + side_m / 2, crs)
        x0, y0, x1, y1, _ = ref
        col0, row0 = ~affine @ (x0, y1)
        col1, row1 = ~affine @ (x1, y0)
        c0, r0 = max(0, int(np.floor(col0)) - 2), max(0, int(np.floor(row0)) - 2)
        c1, r1 = min(w, int(np.ceil(col1)) + 2), min(h, int(np.ceil(row1)) + 2)
        cal = band_calibration(item, asset, spec)
        if modality == "s1":
            values = rng.gamma(2.0, 0.04, size=(r1 - r0, c1 - c0)).astype("float32") + 1e-4
            if units == "dB":
                values = (10 * np.log10(values)).astype("float32")
            dtype, nodata = "float32", cal.nodata
        else:
            refl = rng.uniform(0.01, 0.45, size=(r1 - r0, c1 - c0))
            dn = np.round((refl - cal.offset) / cal.scale)
            values, dtype, nodata = np.clip(dn, 1, 65535).astype("uint16"), "uint16", 0
        values[: max(1, (r1 - r0) // 8), : max(1, (c1 - c0) // 8)] = 0  # nodata corner
        path = folder / f"{name}-{key}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype,
                           crs=crs, transform=affine, nodata=nodata, tiled=True,
                           blockxsize=256, blockysize=256, compress="deflate",
                           sparse_ok=True) as dst:
            dst.write(values, 1, window=Window(c0, r0, c1 - c0, r1 - r0))
        asset.href = str(path)
        asset.media_type = pystac.MediaType.GEOTIFF
        if units is not None:
            rb = asset.extra_fields.setdefault("raster:bands", [{}])
            rb[0]["unit"] = units
    x0, y0, x1, y1, crs = ref
    margin = side_m / 8
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    west, south = to_ll.transform(x0 + margin, y0 + margin)
    east, north = to_ll.transform(x1 - margin, y1 - margin)
    return LocalItem(item, modality, (west, south, east, north), keys, crs)
