"""What every export shares: the stores to read, names of files, and their STAC Items.

An export reads each store (each CRS group of a multi-CRS store) through
:func:`xterrafm.store.open_embeddings` (float32, NaN for empty cells, whatever the stored
data type) and describes the files it writes with one STAC Item each (asset ``embeddings``,
the embeddings extension's ``emb:runtime_parameters``, the projection extension), gathered in
a self-contained static catalog ``catalog.json`` in the output folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError
from xterrafm.store.layout import item_location
from xterrafm.store.read import crs_groups, open_embeddings
from xterrafm.store.stac_item import EMBEDDINGS_EXTENSION

with import_gate():
    import numpy as np
    import odc.geo.xr  # noqa: F401  (registers .odc: the grid of a store's embeddings)
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

__all__ = ["ExportSource", "export_sources", "runtime_parameters", "time_label",
           "write_catalog", "export_item"]

#: Provenance attrs of a store copied into ``emb:runtime_parameters`` of exported files.
_PARAMS = ("model", "weights", "weights_sha256", "modality", "bands", "normalization", "level",
           "tile", "stride", "patch_size", "min_valid", "seed", "device", "precision",
           "stored_dtype", "xterrafm_version")


@dataclass(frozen=True)
class ExportSource:
    """One store to export (a single-CRS store, or one CRS group of a multi-CRS store).

    Attributes
    ----------
    path : str
        The store (or group) path.
    group : str or None
        The CRS group name (``"EPSG_32632"``) in a multi-CRS store.
    stem : str
        Base name of the files exported from it (``"emb"``, ``"emb_EPSG_32632"``).
    embeddings : DataArray
        Lazy float32 ``(time, embedding, y, x)`` embeddings with their CRS.
    """

    path: str
    group: str | None
    stem: str
    embeddings: xr.DataArray

    @property
    def crs(self) -> Any:
        """The CRS (``rasterio.crs.CRS``)."""
        return self.embeddings.rio.crs


def export_sources(store: str | os.PathLike, group: str | None = None) -> list[ExportSource]:
    """The stores to export from ``store``: itself, or its CRS groups (only ``group`` when
    given)."""
    store = str(store)
    groups = crs_groups(store)
    if group is not None and group not in groups:
        raise UsageError(f"{store} has no CRS group {group!r}; it has {groups or 'none'}")
    names = [group] if group is not None else groups
    if not names:
        _, _, stem = item_location(store)
        return [ExportSource(store, None, stem, open_embeddings(store))]
    out = []
    for name in names:
        path = f"{store.rstrip('/')}/{name}"
        _, _, stem = item_location(path)
        out.append(ExportSource(path, name, stem, open_embeddings(store, group=name)))
    return out


def time_label(value: Any, index: int) -> str:
    """``"20240601T103021"``: a date as it appears in file names (``"t<index>"`` for an
    input without dates)."""
    when = np.datetime64(value, "s")
    if np.isnat(when):
        return f"t{index}"
    return str(np.datetime_as_string(when, unit="s")).replace("-", "").replace(":", "")


def runtime_parameters(emb: xr.DataArray) -> dict[str, Any]:
    """``emb:runtime_parameters`` of exported files: the store's provenance attrs."""
    out = {}
    for key in _PARAMS:
        if key in emb.attrs:
            value = emb.attrs[key]
            out[key] = value.tolist() if hasattr(value, "tolist") else value
    return out


def export_item(ident: str, emb: xr.DataArray, times: Sequence[Any], asset_href: str,
                media_type: str, *, extra: dict[str, Any] | None = None,
                geometry: Any = None) -> Any:
    """A STAC Item of one exported file.

    Parameters
    ----------
    ident : str
        Item id.
    emb : DataArray
        The embeddings the file holds (grid and provenance).
    times : sequence
        Dates in the file.
    asset_href : str
        Absolute path of the file (made relative when the catalog is saved).
    media_type : str
    extra : dict, optional
        More properties.
    geometry : odc.geo.geom.Geometry, optional
        Footprint in EPSG:4326 (default: the grid's).
    """
    with import_gate():
        import pystac
        from pystac.extensions.projection import ProjectionExtension

    gbox = emb.odc.geobox
    footprint = geometry if geometry is not None else gbox.footprint("epsg:4326", npoints=4)
    known = [np.datetime64(t, "s") for t in times]
    dates = sorted(pystac.utils.str_to_datetime(np.datetime_as_string(t, unit="s") + "Z")
                   for t in known if not np.isnat(t))
    props: dict[str, Any] = {"emb:runtime_parameters": runtime_parameters(emb),
                             "data_type": "float32", **(extra or {})}
    if not dates:  # an input without dates: the export time stands in, and says so
        dates = [datetime.now(timezone.utc)]
        props["xterrafm:acquisition_dates_unknown"] = True
    if len(dates) > 1:
        props["start_datetime"] = pystac.utils.datetime_to_str(dates[0])
        props["end_datetime"] = pystac.utils.datetime_to_str(dates[-1])
    item = pystac.Item(id=ident, geometry=footprint.json, bbox=list(footprint.boundingbox),
                       datetime=dates[0] if len(dates) == 1 else None, properties=props,
                       stac_extensions=[EMBEDDINGS_EXTENSION])
    if geometry is None:
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        if gbox.crs.epsg is not None:
            proj.code = f"EPSG:{gbox.crs.epsg}"
        else:
            proj.wkt2 = gbox.crs.to_wkt()
        proj.shape = [int(n) for n in gbox.shape]
        proj.transform = [float(v) for v in list(gbox.affine)[:6]]
    item.add_asset("embeddings", pystac.Asset(href=asset_href, media_type=media_type,
                                              roles=["data"]))
    return item


def write_catalog(out_dir: Path, items: Sequence[Any], *, title: str) -> Path:
    """Write ``items`` as a self-contained static catalog (``out_dir/catalog.json``, one
    ``<id>.json`` per Item beside its file, relative hrefs)."""
    with import_gate():
        import pystac

    out_dir = Path(out_dir).absolute()
    catalog = pystac.Catalog(id=f"{title}-export", title=title,
                             description=f"Embeddings exported from the store {title}")
    catalog.set_self_href(str(out_dir / "catalog.json"))
    for item in items:
        item.set_self_href(str(out_dir / f"{item.id}.json"))
        catalog.add_item(item)
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
