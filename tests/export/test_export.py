"""Exports open where other embedding products open: rasterio (COG), pyarrow and geopandas
(GeoParquet), pystac (their catalogs); from Python and from ``python -m xterrafm export``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from xterrafm.cli import EXIT_OK, EXIT_STORE_MISMATCH, EXIT_USAGE, main
from xterrafm.export import export_store
from xterrafm.store import embed_to_zarr, open_embeddings

TINY = dict(model="terrafm-tiny", tile=32, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def stores(make_cube, tiny_weights, tmp_path_factory) -> dict[str, Path]:
    """A float32 and an int8 store (2 dates, a NaN box), and a two-CRS store."""
    root = tmp_path_factory.mktemp("export")
    cube = make_cube(128, 96, chunks=64, nan_box=(96, 128, 0, 40))
    out = {}
    for dtype in ("float32", "int8"):
        out[dtype] = root / f"emb_{dtype}.zarr"
        embed_to_zarr(cube, out[dtype], weights=tiny_weights, dtype=dtype, **TINY)
    multi = root / "multi.zarr"
    group = zarr.open_group(str(multi), mode="w", zarr_format=2)
    group.attrs["xterrafm_crs_groups"] = ["EPSG_32632", "EPSG_32633"]
    embed_to_zarr(cube, multi / "EPSG_32632", weights=tiny_weights, **TINY)
    other = make_cube(64, 64, chunks=64, seed=3).rio.write_crs("EPSG:32633")
    embed_to_zarr(other, multi / "EPSG_32633", weights=tiny_weights, **TINY)
    out["multi"] = multi
    return out


def test_cog_per_date_with_crs_nodata_and_named_bands(stores, tmp_path):
    import pystac

    store = stores["int8"]
    emb = open_embeddings(store)
    result = export_store(store, "cog", tmp_path / "cog")
    assert [p.name for p in result.files] == ["emb_int8_20210115T000000.tif",
                                              "emb_int8_20210215T000000.tif"]
    for t, path in enumerate(result.files):
        with rasterio.open(path) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.crs == rasterio.crs.CRS.from_epsg(32632)
            assert tuple(ds.transform)[:6] == pytest.approx(tuple(emb.odc.geobox.affine)[:6])
            assert ds.count == 32 and np.isnan(ds.nodata) and ds.dtypes[0] == "float32"
            assert ds.descriptions[:2] == ("embedding_000", "embedding_001")
            assert ds.tags(32)["embedding_index"] == "31"
            assert ds.tags()["model"] == "terrafm-tiny"
            values = ds.read()
            np.testing.assert_array_equal(values, emb.isel(time=t).values)
            assert np.isnan(values).any() and np.isfinite(values).any()
    catalog = pystac.Catalog.from_file(str(result.catalog))
    items = sorted(catalog.get_items(), key=lambda it: it.id)
    assert [it.id for it in items] == [p.stem for p in result.files]
    for item, path in zip(items, result.files, strict=True):
        asset = item.assets["embeddings"]
        assert Path(asset.get_absolute_href()) == path
        assert "cloud-optimized" in asset.media_type
        assert item.properties["proj:code"] == "EPSG:32632"
        assert item.properties["emb:runtime_parameters"]["stored_dtype"] == "int8"
    assert items[0].datetime.isoformat().startswith("2021-01-15")


def test_cog_per_crs_of_a_multi_crs_store(stores, tmp_path):
    result = export_store(stores["multi"], "cog", tmp_path / "cog")
    names = sorted(p.name for p in result.files)
    assert names == ["multi_EPSG_32632_20210115T000000.tif", "multi_EPSG_32632_20210215T000000.tif",
                     "multi_EPSG_32633_20210115T000000.tif", "multi_EPSG_32633_20210215T000000.tif"]
    with rasterio.open(tmp_path / "cog" / names[-1]) as ds:
        assert ds.crs == rasterio.crs.CRS.from_epsg(32633)
    only = export_store(stores["multi"], "cog", tmp_path / "one", group="EPSG_32633")
    assert len(only.files) == 2


@pytest.mark.requires_export
def test_geoparquet_rows_of_valid_cells_with_footprints(stores, tmp_path):
    import geopandas as gpd
    import pyarrow.parquet as pq
    import pystac
    from pyproj import Transformer

    store = stores["float32"]
    emb = open_embeddings(store)
    result = export_store(store, "geoparquet", tmp_path / "pq")
    (path,) = result.files
    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["encoding"] == "WKB"
    values = emb.values
    valid = np.isfinite(values).all(axis=1)
    assert table.num_rows == int(valid.sum()) < valid.size  # empty cells are left out
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    t_idx = np.searchsorted(emb["time"].values.astype("datetime64[us]"),
                            table.column("time").to_numpy().astype("datetime64[us]"))
    rows, cols = table.column("row").to_numpy(), table.column("col").to_numpy()
    np.testing.assert_array_equal(vectors, np.moveaxis(values, 1, -1)[t_idx, rows, cols])
    assert set(table.column("crs").to_pylist()) == {"EPSG:32632"}

    gdf = gpd.read_parquet(path)
    assert gdf.crs.equals("OGC:CRS84") and (gdf.geom_type == "Polygon").all()
    utm = gdf.to_crs(32632)
    np.testing.assert_allclose(utm.area, 320.0 ** 2, rtol=1e-3)  # a 32 px window of 10 m
    lon, lat = Transformer.from_crs(32632, "OGC:CRS84", always_xy=True).transform(
        gdf["x"].to_numpy(), gdf["y"].to_numpy())
    centres = gpd.GeoSeries(gpd.points_from_xy(lon, lat), index=gdf.index, crs="OGC:CRS84")
    assert gdf.contains(centres).all()

    item = next(pystac.Catalog.from_file(str(result.catalog)).get_items())
    assert Path(item.assets["embeddings"].get_absolute_href()) == path
    assert item.assets["embeddings"].media_type == "application/vnd.apache.parquet"
    assert item.properties["xterrafm:rows"] == table.num_rows


@pytest.mark.requires_export
def test_geoparquet_of_a_multi_crs_store_shares_one_geometry_column(stores, tmp_path):
    import geopandas as gpd

    result = export_store(stores["multi"], "geoparquet", tmp_path / "pq")
    gdf = gpd.read_parquet(result.files[0])
    assert result.files[0].name == "multi.parquet"
    assert set(gdf["crs"]) == {"EPSG:32632", "EPSG:32633"}
    assert gdf.crs.equals("OGC:CRS84")


def test_the_export_command(stores, tmp_path, capsys):
    out = tmp_path / "cog"
    assert main(["export", str(stores["float32"]), "--format", "cog", "--out", str(out)]) == \
        EXIT_OK
    printed = capsys.readouterr().out
    assert "emb_float32_20210115T000000.tif" in printed and "catalog.json" in printed
    # files exist: refused without --overwrite, replaced with it
    assert main(["export", str(stores["float32"]), "--format", "cog", "--out", str(out)]) == \
        EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(stores["float32"]), "--format", "cog", "--out", str(out),
                 "--overwrite"]) == EXIT_OK
    assert main(["export", str(tmp_path), "--format", "cog", "--out", str(out)]) == \
        EXIT_STORE_MISMATCH
    assert "not an xterrafm embedding store" in capsys.readouterr().err
