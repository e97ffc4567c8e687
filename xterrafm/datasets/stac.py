"""Static STAC metadata for synthetic scenes: Items, ItemCollections and a self-contained catalog.

The Items mimic the public catalogs xterrafm reads: Sentinel-2 L2A named like the Planetary
Computer (asset keys ``B02`` ..., offset given only through ``s2:processing_baseline``) and like
Earth Search (asset keys ``blue``, ``nir08`` ..., with ``raster:bands`` scale/offset),
Sentinel-2 L1C, Sentinel-1 RTC (lower-case ``vv``/``vh``) and an ESA WorldCover-like map. They
carry the eo, raster and projection extensions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.bands import S2_L2A

with import_gate():
    import numpy as np
    import pystac
    from odc.geo.geobox import GeoBox
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

__all__ = [
    "AssetFile",
    "S2_EARTHSEARCH_KEYS",
    "S2_COMMON_NAMES",
    "make_item",
    "write_catalog",
    "write_item_collection",
]

#: Earth Search v1 asset key of each Sentinel-2 band (canonical name -> key).
S2_EARTHSEARCH_KEYS: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22", "SCL": "scl",
}

#: ``eo:bands`` common names (STAC eo extension vocabulary) of the Sentinel-2 bands.
S2_COMMON_NAMES: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge",
    "B06": "rededge", "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22",
}

_S2_FWHM_UM: dict[str, float] = {
    "B01": 0.027, "B02": 0.098, "B03": 0.045, "B04": 0.038, "B05": 0.019, "B06": 0.018,
    "B07": 0.028, "B08": 0.145, "B8A": 0.033, "B09": 0.026, "B11": 0.143, "B12": 0.242,
}


@dataclass(frozen=True)
class AssetFile:
    """One raster file to be described as a STAC asset.

    Attributes
    ----------
    key : str
        Asset key in the Item.
    path : pathlib.Path
        Absolute path of the COG.
    band : str
        Canonical band name (``"B02"``, ``"SCL"``, ``"VV"``, ``"map"``).
    geobox : odc.geo.geobox.GeoBox
        Grid of the file (its own resolution).
    dtype : str
        Numpy dtype name of the pixels.
    nodata : float or str
        Nodata value (``"nan"`` for float rasters).
    scale, offset : float or None
        ``raster:bands`` scale and offset to physical units, or None where the style omits them.
    roles : tuple of str
        Asset roles.
    eo_name : str or None
        ``eo:bands`` name (default: ``band``).
    """

    key: str
    path: Path
    band: str
    geobox: GeoBox
    dtype: str
    nodata: float | str
    scale: float | None = None
    offset: float | None = None
    roles: tuple[str, ...] = ("data",)
    eo_name: str | None = None


def _eo_band(band: str, name: str) -> Band | None:
    """``eo:bands`` entry of a band (None for non-spectral assets)."""
    if band in S2_COMMON_NAMES:
        spec = S2_L2A.band(band)
        return Band.create(
            name=name,
            common_name=S2_COMMON_NAMES[band],
            center_wavelength=spec.wavelength_um,
            full_width_half_max=_S2_FWHM_UM[band],
            description=f"Sentinel-2 band {band}",
        )
    if band in ("VV", "VH"):
        return Band.create(name=name, description=f"Sentinel-1 {band} backscatter, linear power")
    return Band.create(name=name, description=f"{band} classification")


def _footprint(geobox: GeoBox) -> tuple[dict, list[float]]:
    """GeoJSON polygon and bbox (lon/lat) of a grid's extent (its four corners)."""
    x0, y0, x1, y1 = geobox.extent.boundingbox
    to_lonlat = geobox.crs.transformer_to_crs("EPSG:4326")
    lon, lat = to_lonlat(np.array([x0, x0, x1, x1, x0]), np.array([y1, y0, y0, y1, y1]))
    ring = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
    return {"type": "Polygon", "coordinates": [ring]}, [
        float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())
    ]


def make_item(
    item_id: str,
    collection_id: str,
    when: datetime,
    footprint_geobox: GeoBox,
    assets: Sequence[AssetFile],
    properties: Mapping[str, object],
) -> pystac.Item:
    """A STAC Item with eo, raster and projection metadata and absolute asset hrefs.

    Parameters
    ----------
    item_id, collection_id : str
        Identifiers.
    when : datetime.datetime
        Acquisition time (timezone-aware UTC).
    footprint_geobox : odc.geo.geobox.GeoBox
        The 10 m grid; its extent gives geometry and bbox, its CRS ``proj:code``.
    assets : sequence of AssetFile
        Raster files; each gets ``proj:shape``/``proj:transform`` of its own grid.
    properties : mapping
        Extra Item properties (``platform``, ``s2:processing_baseline`` ...).

    Returns
    -------
    pystac.Item
    """
    geometry, bbox = _footprint(footprint_geobox)
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=when,
        properties=dict(properties),
        collection=collection_id,
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = str(footprint_geobox.crs)
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    for a in assets:
        asset = pystac.Asset(
            href=a.path.resolve().as_posix(),
            media_type=pystac.MediaType.COG,
            roles=list(a.roles),
            title=a.band,
        )
        item.add_asset(a.key, asset)
        gsd = float(abs(a.geobox.resolution.x))
        asset.extra_fields["gsd"] = gsd
        aproj = ProjectionExtension.ext(asset)
        aproj.shape = [int(a.geobox.shape.y), int(a.geobox.shape.x)]
        aproj.transform = [float(v) for v in tuple(a.geobox.transform)[:6]]
        EOExtension.ext(asset).bands = [_eo_band(a.band, a.eo_name or a.band)]
        RasterExtension.ext(asset).bands = [
            RasterBand.create(
                nodata=a.nodata,
                data_type=DataType(a.dtype),
                spatial_resolution=gsd,
                scale=a.scale,
                offset=a.offset,
            )
        ]
    return item


def _relative_href(path: str, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def write_item_collection(items: Sequence[pystac.Item], dest: Path) -> Path:
    """Write items as an ItemCollection JSON whose asset hrefs are relative to ``dest``'s folder.

    Parameters
    ----------
    items : sequence of pystac.Item
        Items with absolute asset hrefs (left unchanged; clones are written).
    dest : pathlib.Path
        Output JSON path.

    Returns
    -------
    pathlib.Path
        ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for it in items:
        c = it.clone()
        c.clear_links()
        for asset in c.assets.values():
            asset.href = _relative_href(asset.href, dest.parent.resolve())
        out.append(c)
    pystac.ItemCollection(out).save_object(dest.as_posix())
    return dest


def write_catalog(
    root: Path,
    collections: Mapping[str, tuple[str, Sequence[pystac.Item]]],
    catalog_id: str,
    description: str,
) -> Path:
    """Write a self-contained static catalog with relative links and relative asset hrefs.

    Parameters
    ----------
    root : pathlib.Path
        Folder of ``catalog.json``.
    collections : mapping
        ``{collection id: (description, items)}``; items are cloned, not modified.
    catalog_id, description : str
        Catalog identifiers.

    Returns
    -------
    pathlib.Path
        Path of ``catalog.json``.
    """
    root = Path(root).resolve()
    cat = pystac.Catalog(id=catalog_id, description=description)
    for cid, (desc, items) in collections.items():
        clones = [it.clone() for it in items]
        for c in clones:
            c.clear_links()
        coll = pystac.Collection(
            id=cid,
            description=desc,
            extent=pystac.Extent.from_items(clones),
            license="CC-BY-4.0",
        )
        coll.add_items(clones)
        cat.add_child(coll)
    cat.normalize_hrefs(root.as_posix())
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"
