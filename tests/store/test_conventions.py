"""Stores others can read: geo-embeddings attrs, a STAC Item (pystac), GDAL through rasterio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from tests.store.conftest import TINY
from xterrafm.store import embed_to_zarr, open_embeddings

#: ``emb:`` fields the embeddings extension (v0.0.1) allows in Item properties, and the fields
#: of its Energy and Quantization objects (its schema forbids others).
EMB_ITEM_FIELDS = {"emb:runtime_parameters", "emb:preprocessing", "emb:postprocessing",
                   "emb:fit_for_use", "emb:spatial_coverage", "emb:uncertainty",
                   "emb:quantization", "emb:energy"}
ENERGY_FIELDS = {"device_type", "energy_kwh", "inference_duration_s", "avg_power_w",
                 "max_power_w", "name", "instance_type", "platform"}
QUANT_FIELDS = {"method", "original_dtype", "scale", "offset", "quantized_dtype", "link"}


@pytest.fixture(scope="module")
def store(make_cube, tiny_weights, tmp_path_factory) -> Path:
    cube = make_cube(128, 96, chunks=64, nan_box=(96, 128, 0, 40))
    path = tmp_path_factory.mktemp("conventions") / "emb.zarr"
    embed_to_zarr(cube, path, weights=tiny_weights,
                  sources=["https://example.org/stac/items/S1A_1", "scene/item-2.json"], **TINY)
    return path


def test_group_attrs_follow_the_geo_embeddings_convention(store):
    attrs = zarr.open_group(str(store), mode="r").attrs
    fp = json.loads(attrs["xterrafm_fingerprint"])
    uuids = {c["uuid"] for c in attrs["zarr_conventions"]}
    assert "61c12cc5-0e28-4056-999a-480cf3fb7e4c" in uuids  # geoemb:
    assert {"f17cb550-5864-4468-aeb7-f3180cfb622f", "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4"} \
        <= uuids  # proj:, spatial:
    assert attrs["geoemb:type"] == "chip"
    assert attrs["geoemb:dimensions"] == fp["embedding_dim"] == 32
    assert attrs["geoemb:model"] == f"urn:sha256:{fp['weights_sha256']}"
    assert attrs["geoemb:data_type"] == "float32"
    assert attrs["geoemb:gsd"] == 10.0
    assert attrs["geoemb:chip_layout"] == {"layout_type": "regular_grid", "chip_size": [32, 32],
                                           "stride": [32, 32]}
    sources = attrs["geoemb:source_data"]
    assert "https://example.org/stac/items/S1A_1" in sources
    assert any(s.startswith("file://") and s.endswith("scene/item-2.json") for s in sources)
    assert attrs["proj:code"] == "EPSG:32632"
    emb = open_embeddings(store)
    assert attrs["spatial:transform"] == list(emb.odc.geobox.affine)[:6]
    assert attrs["spatial:shape"] == [emb.sizes["y"], emb.sizes["x"]]
    assert "geoemb:spatial_layout" not in attrs  # one CRS, no groups


def test_one_writer_per_stored_object(store):
    arr = zarr.open_array(str(store), path="embeddings", mode="r")
    assert arr.shards is None  # no sharding (zarr-python#3682): a block is one chunk
    emb = open_embeddings(store)
    assert arr.chunks == (1, 32, 2, 2) and emb.shape[1] == 32


def _item_path(store: Path) -> Path:
    return store.parent / "emb.stac-item.json"


def test_a_stac_item_describes_the_store(store):
    import pystac

    item = pystac.Item.from_file(str(_item_path(store)))
    assert item.id == "emb"
    assert "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json" in \
        item.stac_extensions
    asset = item.assets["embeddings"]
    assert Path(asset.get_absolute_href()) == store.absolute()
    assert asset.media_type == "application/vnd+zarr"
    props = item.properties
    assert {k for k in props if k.startswith("emb:")} <= EMB_ITEM_FIELDS
    params = props["emb:runtime_parameters"]
    assert (params["tile"], params["stride"], params["dtype"], params["model"]) == \
        (32, 32, "float32", "terrafm-tiny")
    energy = props["emb:energy"]
    assert set(energy) <= ENERGY_FIELDS
    assert energy["device_type"] == "cpu" and energy["inference_duration_s"] > 0
    assert "energy_kwh" not in energy  # not measured, not invented
    assert props["xterrafm:cpu_time_s"] > 0 and props["xterrafm:complete"] is True
    assert props["start_datetime"].startswith("2021-01-15") and item.datetime is None
    assert props["proj:code"] == "EPSG:32632"
    sources = {link.href for link in item.links if link.rel == "emb:source-data"}
    assert "https://example.org/stac/items/S1A_1" in sources and len(sources) == 2
    lon, lat = item.geometry["coordinates"][0][0]
    assert 8 < lon < 11 and 45 < lat < 47  # UTM 32N near (600 km E, 5100 km N)


def test_the_item_accumulates_over_runs_and_int8_declares_its_quantisation(
        make_cube, tiny_weights, tmp_path):
    import pystac

    cube = make_cube(128, 96, chunks=64)
    store = tmp_path / "q.zarr"

    def stop(summary):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_to_zarr(cube, store, weights=tiny_weights, dtype="int8", wave_size=2,
                      on_wave=stop, **TINY)
    first = pystac.Item.from_file(str(tmp_path / "q.stac-item.json"))
    assert first.properties["xterrafm:complete"] is False
    embed_to_zarr(cube, store, weights=tiny_weights, dtype="int8", **TINY)
    item = pystac.Item.from_file(str(tmp_path / "q.stac-item.json"))
    props = item.properties
    assert props["xterrafm:runs"] == 2 and props["xterrafm:complete"] is True
    assert props["xterrafm:cpu_time_s_total"] >= props["xterrafm:cpu_time_s"] + \
        first.properties["xterrafm:cpu_time_s"] - 1e-3
    assert set(props["emb:quantization"]) <= QUANT_FIELDS
    assert props["emb:quantization"]["quantized_dtype"] == "int8"
    assert props["data_type"] == "int8"


def test_gdal_in_the_rasterio_wheel_reads_the_default_store(store):
    emb = open_embeddings(store)
    ref = emb.values
    t, d, ny, nx = ref.shape
    with rasterio.open(f'ZARR:"{store}":/embeddings') as ds:
        assert ds.count == t * d and (ds.height, ds.width) == (ny, nx)
        assert ds.crs == rasterio.crs.CRS.from_epsg(32632)
        assert tuple(ds.transform)[:6] == pytest.approx(tuple(emb.odc.geobox.affine)[:6])
        assert np.isnan(ds.nodata)
        tags = ds.tags(d + 3)  # bands run over (time, embedding): band d + 3 is (1, 2)
        assert (tags["DIM_time_INDEX"], tags["DIM_embedding_INDEX"]) == ("1", "2")
        np.testing.assert_array_equal(ds.read().reshape(ref.shape), ref)
    with rasterio.open(f'ZARR:"{store}":/embeddings:1:5') as one:  # date 1, dimension 5
        np.testing.assert_array_equal(one.read(1), ref[1, 5])
        assert one.crs == rasterio.crs.CRS.from_epsg(32632)


def test_gdal_reads_int8_stores_raw_with_their_nodata(make_cube, tiny_weights, tmp_path):
    cube = make_cube(96, 64, chunks=64, nan_box=(64, 96, 0, 64))
    store = tmp_path / "q.zarr"
    embed_to_zarr(cube, store, weights=tiny_weights, dtype="int8", **TINY)
    raw = open_embeddings(store, decode=False).values
    with rasterio.open(f'ZARR:"{store}":/embeddings') as ds:
        assert ds.dtypes[0] == "int8" and ds.nodata == -128
        np.testing.assert_array_equal(ds.read().reshape(raw.shape), raw)
    with rasterio.open(f'ZARR:"{store}":/scales:0') as sc:
        assert sc.dtypes[0] == "float32"


def test_inputs_without_dates_get_an_item_saying_so(make_cube, tiny_weights, tmp_path):
    import pystac

    cube = make_cube(64, 64, chunks=64)
    cube = cube.assign_coords(time=np.array(["NaT", "NaT"], dtype="datetime64[ns]"))
    embed_to_zarr(cube, tmp_path / "nodates.zarr", weights=tiny_weights, **TINY)
    item = pystac.Item.from_file(str(tmp_path / "nodates.stac-item.json"))
    assert item.properties["xterrafm:acquisition_dates_unknown"] is True
    assert item.datetime is not None


def test_a_refused_run_leaves_items_alone(store, make_cube, tiny_weights, tmp_path):
    from xterrafm.errors import NotAStoreError, StoreMismatchError

    before = _item_path(store).read_bytes()
    cube = make_cube(128, 96, chunks=64, nan_box=(96, 128, 0, 40))
    with pytest.raises(StoreMismatchError, match="tile: store has 32"):
        embed_to_zarr(cube, store, weights=tiny_weights, **{**TINY, "tile": 64})
    assert _item_path(store).read_bytes() == before
    other = tmp_path / "not-ours"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(NotAStoreError):
        embed_to_zarr(cube, other, weights=tiny_weights, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-ours"]
