"""GeoParquet of an embedding store: one row per valid cell and date.

The file ``<stem>.parquet`` holds, for every cell with an embedding (empty cells are left
out), of every CRS group of the store:

``geometry``
    The cell's footprint (the window at the tile level, the 16 px patch at the patch level,
    of ``x``/``y`` spacing around the cell centre) as a WKB polygon in longitude/latitude
    (OGC:CRS84), so that rows of several UTM zones share one geometry column.
``time``
    The date (timestamp, UTC).
``crs``
    The store's CRS (``"EPSG:32632"``), in which ``x`` and ``y`` (cell centre, float64) and
    ``row``/``col`` (cell indices, int32) are given.
``embedding``
    The vector: ``fixed_size_list<float32>[D]`` (int8 and float16 stores decoded).

The schema carries GeoParquet 1.1 metadata (``geo``: primary column, WKB encoding, Polygon,
the CRS as PROJJSON). Rows are written block by block (one row group per store chunk), so
memory stays at one chunk whatever the area.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError
from xterrafm.export.items import ExportSource, export_item, export_sources, write_catalog
from xterrafm.store.layout import item_location

with import_gate():
    import numpy as np

__all__ = ["GEOPARQUET_VERSION", "PARQUET_MEDIA_TYPE", "export_geoparquet", "geo_metadata"]

#: GeoParquet version written.
GEOPARQUET_VERSION = "1.1.0"
#: Media type of a Parquet asset.
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def geo_metadata() -> dict[str, Any]:
    """The ``geo`` metadata of the file (geometry column, encoding, type, CRS)."""
    with import_gate():
        from pyproj import CRS

    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                     "crs": CRS.from_user_input("OGC:CRS84").to_json_dict(),
                                     "edges": "planar"}}}


def _schema(dim: int) -> Any:
    with import_gate():
        import pyarrow as pa

    schema = pa.schema([
        ("geometry", pa.binary()), ("time", pa.timestamp("us", tz="UTC")), ("crs", pa.string()),
        ("x", pa.float64()), ("y", pa.float64()), ("row", pa.int32()), ("col", pa.int32()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])
    return schema.with_metadata({b"geo": json.dumps(geo_metadata()).encode()})


def _footprints(src: ExportSource, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """WKB polygons (lon/lat) of cells ``rows``/``cols`` of ``src``'s grid."""
    with import_gate():
        import shapely
        from pyproj import Transformer

    gbox = src.embeddings.odc.geobox
    a = gbox.affine
    corners = np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], dtype=np.float64)
    cx = cols[:, None] + corners[None, :, 0]
    cy = rows[:, None] + corners[None, :, 1]
    x = a.c + a.a * cx + a.b * cy
    y = a.f + a.d * cx + a.e * cy
    to_lonlat = Transformer.from_crs(gbox.crs.to_wkt(), "OGC:CRS84", always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    rings = np.stack([lon, lat], axis=-1)
    return shapely.to_wkb(shapely.polygons(rings))


def _crs_label(src: ExportSource) -> str:
    crs = src.embeddings.odc.geobox.crs
    return f"EPSG:{crs.epsg}" if crs.epsg is not None else crs.to_wkt()


def _write_source(writer: Any, src: ExportSource) -> tuple[int, list[float]]:
    """Write the valid cells of one store; returns (rows written, lon/lat bbox)."""
    with import_gate():
        import pyarrow as pa

    emb = src.embeddings
    dim = int(emb.sizes["embedding"])
    xs, ys = emb["x"].values, emb["y"].values
    crs = _crs_label(src)
    ychunks = emb.chunks[2] if emb.chunks else (emb.sizes["y"],)
    xchunks = emb.chunks[3] if emb.chunks else (emb.sizes["x"],)
    n, bbox = 0, [np.inf, np.inf, -np.inf, -np.inf]
    for t, when in enumerate(np.atleast_1d(emb["time"].values)):
        y0 = 0
        for hy in ychunks:
            x0 = 0
            for wx in xchunks:
                block = np.asarray(emb[t, :, y0:y0 + hy, x0:x0 + wx].values, dtype=np.float32)
                valid = np.isfinite(block).all(axis=0)
                r, c = np.nonzero(valid)
                if r.size:
                    rows, cols = (r + y0).astype(np.int32), (c + x0).astype(np.int32)
                    wkb = _footprints(src, rows.astype(np.float64), cols.astype(np.float64))
                    vectors = np.ascontiguousarray(block[:, r, c].T)
                    table = pa.table({
                        "geometry": pa.array(wkb, pa.binary()),
                        "time": pa.array(np.full(r.size, np.datetime64(when, "us")),
                                         pa.timestamp("us", tz="UTC")),
                        "crs": pa.array([crs] * r.size, pa.string()),
                        "x": pa.array(xs[cols].astype(np.float64)),
                        "y": pa.array(ys[rows].astype(np.float64)),
                        "row": pa.array(rows), "col": pa.array(cols),
                        "embedding": pa.FixedSizeListArray.from_arrays(
                            pa.array(vectors.reshape(-1), pa.float32()), dim),
                    }, schema=writer.schema)
                    writer.write_table(table)
                    n += int(r.size)
                x0 += wx
            y0 += hy
    fp = emb.odc.geobox.footprint("epsg:4326").boundingbox
    bbox = [min(bbox[0], fp.left), min(bbox[1], fp.bottom), max(bbox[2], fp.right),
            max(bbox[3], fp.top)]
    return n, bbox


def export_geoparquet(store: str | os.PathLike, out_dir: str | os.PathLike, *,
                      group: str | None = None, overwrite: bool = False) -> Path:
    """Export the valid cells of a store (all CRS groups) as one GeoParquet file, with a STAC
    catalog holding its Item.

    Parameters
    ----------
    store : str or path
        An embedding store (single- or multi-CRS).
    out_dir : str or path
        Folder for ``<stem>.parquet`` (created); ``catalog.json`` and the Item go there too.
    group : str, optional
        Export only this CRS group of a multi-CRS store.
    overwrite : bool
        Replace the file if it exists (default: refuse).

    Returns
    -------
    Path
        The GeoParquet file.

    Raises
    ------
    UsageError
        The file exists (without ``overwrite``), or ``group`` is not in the store.
    NotAStoreError
        ``store`` is not an embedding store.
    """
    with import_gate():
        import pyarrow.parquet as pq
        from odc.geo.geom import box

    sources = export_sources(store, group)
    out_dir = Path(out_dir).absolute()
    stem = sources[0].stem if group is not None else item_location(str(store))[2]
    path = out_dir / f"{stem}.parquet"
    if path.exists() and not overwrite:
        raise UsageError(f"export would replace {path}; pass overwrite=True (--overwrite) or "
                         "another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    dim = int(sources[0].embeddings.sizes["embedding"])
    tmp = path.with_name(path.name + ".tmp")
    total, bbox = 0, [np.inf, np.inf, -np.inf, -np.inf]
    try:
        with pq.ParquetWriter(tmp, _schema(dim), compression="zstd") as writer:
            for src in sources:
                n, b = _write_source(writer, src)
                total += n
                bbox = [min(bbox[0], b[0]), min(bbox[1], b[1]), max(bbox[2], b[2]),
                        max(bbox[3], b[3])]
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    times = sorted({t for src in sources for t in np.atleast_1d(src.embeddings["time"].values)})
    item = export_item(path.stem, sources[0].embeddings, times, str(path), PARQUET_MEDIA_TYPE,
                       geometry=box(*bbox, "epsg:4326"),
                       extra={"xterrafm:rows": total,
                              "xterrafm:crs": sorted({_crs_label(s) for s in sources}),
                              "xterrafm:source_store": str(store)})
    write_catalog(out_dir, [item], title=Path(str(store).rstrip("/")).name)
    return path
