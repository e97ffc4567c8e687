"""Every input is embedded in physical units or refused: odc-stac Datasets of real catalogs'
items (with ``items=``) equal the ``load_stac`` path; DN, integer, boolean, dB and numbered
inputs are refused or converted as documented (docs/inputs.md); the checks compute at most one
bounded sample."""

from __future__ import annotations

import numpy as np
import odc.stac
import pytest
import rasterio
import rioxarray
import xarray as xr

import xterrafm
from tests.helpers.counting import CountingScheduler, raise_if_dask_computes
from tests.helpers.stac_fixtures import ITEMS, localize, read_item
from xterrafm.bands import band_names
from xterrafm.embedding.api import plan_embedding
from xterrafm.embedding.settings import EmbedSettings
from xterrafm.errors import BandNotFoundError, InputError, UsageError
from xterrafm.io.geotiff import open_geotiff
from xterrafm.io.stac import load_stac

CHUNKS = {"time": 1, "y": 64, "x": 64}


@pytest.fixture
def run(tiny_weights):
    """Embedding settings for the tests: terrafm-tiny, 32 px windows, CPU."""
    return {"model": "terrafm-tiny", "weights": tiny_weights, "tile": 32, "device": "cpu"}


def _physical(obj, **settings) -> xr.DataArray:
    cube, _ = plan_embedding(obj, EmbedSettings(**settings))
    return cube


def _embed(obj, **settings) -> np.ndarray:
    return xterrafm.embed(obj, **settings).compute(scheduler="synchronous").values


# -- odc-stac Datasets of real items ---------------------------------------------------------
@pytest.mark.parametrize("name", list(n for n in ITEMS if n != "stactools-s1-grd"))
def test_odc_stac_dataset_with_its_items_equals_the_load_stac_path(tmp_path, run, name):
    local = localize(name, tmp_path)
    res = 20 if local.modality == "s1" else 10
    keys = [local.asset_keys[b] for b in band_names(local.modality)]
    cube = load_stac([local.item], modality=local.modality, bbox=local.bbox, resolution=res,
                     resampling="nearest", chunks=CHUNKS)
    ds = odc.stac.load([local.item], bands=keys, bbox=local.bbox, resolution=res,
                       chunks=CHUNKS, groupby="time")
    # (uint16 where the item declares raster:bands data_type, float32 where it does not)
    want = _physical(cube, **run)
    got = _physical(ds, modality=local.modality, items=[local.item], **run)
    np.testing.assert_array_equal(got.values, want.values)  # the same model input, bitwise
    emb_a = _embed(cube, **run)
    emb_b = _embed(ds, modality=local.modality, items=[local.item], **run)
    assert np.isfinite(emb_a).any()
    np.testing.assert_allclose(emb_b, emb_a, rtol=1e-5, atol=1e-5)
    attrs = xterrafm.embed(ds, modality=local.modality, items=[local.item], **run).attrs
    assert attrs["calibration"].startswith("auto: STAC items")


def test_bilinear_float_dataset_equals_load_stac_too(tmp_path, run):
    local = localize("planetary-computer-l2a", tmp_path)
    keys = [local.asset_keys[b] for b in band_names("s2_l2a")]
    cube = load_stac([local.item], modality="s2_l2a", bbox=local.bbox, chunks=CHUNKS)
    ds = odc.stac.load([local.item], bands=keys, bbox=local.bbox, resolution=10, chunks=CHUNKS,
                       dtype="float32", resampling="bilinear")
    got = _physical(ds, modality="s2_l2a", items=[local.item], **run).values
    np.testing.assert_array_equal(got, _physical(cube, **run).values)


def test_odc_stac_dataset_without_calibration_is_refused_before_any_compute(tmp_path, run):
    local = localize("planetary-computer-l2a", tmp_path)
    keys = [local.asset_keys[b] for b in band_names("s2_l2a")]
    ds = odc.stac.load([local.item], bands=keys, bbox=local.bbox, resolution=10, chunks=CHUNKS)
    with raise_if_dask_computes(), pytest.raises(InputError) as info:
        xterrafm.embed(ds, modality="s2_l2a", **run)
    msg = str(info.value)
    assert "uint16" in msg and "digital numbers" in msg
    assert "load_stac" in msg and "items=" in msg and "calibration=" in msg
    # a float load of the same DN is refused from the bounded sample
    ds_f = odc.stac.load([local.item], bands=keys, bbox=local.bbox, resolution=10,
                         chunks=CHUNKS, dtype="float32")
    with pytest.raises(InputError, match="digital numbers"):
        xterrafm.embed(ds_f, modality="s2_l2a", **run)


def test_dataset_missing_a_band_names_it(tmp_path, run):
    local = localize("planetary-computer-l2a", tmp_path)
    keys = [local.asset_keys[b] for b in band_names("s2_l2a") if b != "B05"]
    ds = odc.stac.load([local.item], bands=keys, bbox=local.bbox, resolution=10, chunks=CHUNKS)
    with pytest.raises(BandNotFoundError, match="band B05 of modality 's2_l2a' is missing"):
        xterrafm.embed(ds, modality="s2_l2a", items=[local.item], **run)


def test_sentinel1_grd_items_are_refused_for_a_dataset(make_cube, run):
    ds = make_cube(64, 64, modality="s1", n_dates=1).to_dataset("band")
    with pytest.raises(InputError, match="GRD.*RTC"):
        xterrafm.embed(ds, modality="s1", items=[read_item("stactools-s1-grd")], **run)


def test_a_load_stac_cube_is_not_calibrated_twice_and_not_sampled(tmp_path, run):
    local = localize("stactools-l2a", tmp_path)
    cube = load_stac([local.item], modality="s2_l2a", bbox=local.bbox, chunks=CHUNKS)
    with raise_if_dask_computes():
        emb = xterrafm.embed(cube, **run)
    assert emb.attrs["calibration"].startswith("as loaded (xterrafm.io.load_stac")
    with pytest.raises(UsageError, match="a second time"):
        xterrafm.embed(cube, calibration="s2-dn", **run)
    with pytest.raises(UsageError, match="a second time"):
        xterrafm.embed(cube, items=[local.item], **run)


# -- DN, integer, boolean ---------------------------------------------------------------------
def test_integer_and_boolean_cubes_are_refused_from_their_dtype(make_cube, run):
    cube = make_cube(64, 64, modality="s2_l2a", chunks=32)
    for bad in ((cube * 10000).astype("uint16"), (cube * 10000).astype("int32"), cube > 0.1):
        bad.attrs["modality"] = "s2_l2a"
        with raise_if_dask_computes(), pytest.raises(InputError) as info:
            xterrafm.embed(bad, **run)
        assert str(bad.dtype) in str(info.value) or "boolean" in str(info.value)


def test_float_digital_numbers_are_refused_from_one_bounded_sample(make_cube, run):
    cube = make_cube(256, 256, modality="s2_l2a", chunks=32)  # 64 chunks per date
    dn = cube * 10000
    seen: list[tuple] = []

    def note(block, block_info=None):
        seen.append(tuple(block_info[0]["chunk-location"]))
        return block

    counted = dn.copy(data=dn.data.map_blocks(note, dtype=dn.dtype))
    counter = CountingScheduler(max_computes=1)
    import dask

    with dask.config.set(scheduler=counter), pytest.raises(InputError) as info:
        xterrafm.embed(counted, modality="s2_l2a", **run)
    assert counter.total_computes == 1
    assert 0 < len(set(seen)) <= 4  # at most 4 of the 128 chunks are read
    assert {loc[0] for loc in seen} == {0}  # of the first date only
    assert "median" in str(info.value) and "digital numbers" in str(info.value)


def test_explicit_s2_dn_calibration_equals_the_physical_cube(make_cube, run):
    cube = make_cube(64, 64, modality="s2_l2a", n_dates=1)
    dn = np.round(cube.values * 10000).astype("uint16")
    dn_cube = cube.copy(data=dn)
    physical = cube.copy(data=dn.astype("float32") * np.float32(1e-4))
    got = _physical(dn_cube, calibration="s2-dn", **run).values
    np.testing.assert_array_equal(got, physical.values)
    offset = cube.copy(data=(dn + 1000).astype("uint16"))
    got = _physical(offset, calibration="s2-dn-offset", **run).values
    want = (dn + 1000).astype("float32") * np.float32(1e-4) + np.float32(-0.1)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(UsageError, match="Sentinel-2 inputs"):
        xterrafm.embed(make_cube(32, 32, modality="s1"), calibration="s2-dn", **run)


def test_cf_attributes_are_applied(make_cube, run):
    cube = make_cube(64, 64, modality="s2_l2a", n_dates=1)
    dn = np.round(cube.values * 10000).astype("int16")
    dn[:, :, :4, :4] = -9999
    cf = cube.copy(data=dn)
    cf.attrs.update(scale_factor=1e-4, add_offset=0.0, _FillValue=-9999)
    got = _physical(cf, **run).values
    assert np.isnan(got[:, :, :4, :4]).all()
    want = dn.astype("float32") * np.float32(1e-4)
    np.testing.assert_array_equal(got[:, :, 4:, 4:], want[:, :, 4:, 4:])


# -- rioxarray.open_rasterio -----------------------------------------------------------------
def _write_s2_tif(path, dn, order, described=True, scale=1e-4, offset=-0.1):
    from odc.geo.geobox import GeoBox

    gbox = GeoBox.from_bbox((600000, 5100000, 600000 + 10 * dn.shape[2],
                             5100000 + 10 * dn.shape[1]), "EPSG:32632", resolution=10)
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1],
                       count=len(order), dtype="uint16", crs="EPSG:32632",
                       transform=gbox.affine, nodata=0) as dst:
        for i, b in enumerate(order):
            dst.write(dn[band_names("s2_l2a").index(b)], i + 1)
            if described:
                dst.set_band_description(i + 1, b)
        dst.scales = [scale] * len(order)
        dst.offsets = [offset] * len(order)


def test_rioxarray_band_descriptions_and_gdal_scales_are_used(tmp_path, run):
    rng = np.random.default_rng(0)
    dn = rng.integers(1100, 5000, size=(12, 96, 96)).astype("uint16")
    dn[:, :8, :8] = 0
    order = list(reversed(band_names("s2_l2a")))  # bands stored in another order
    path = tmp_path / "scene.tif"
    _write_s2_tif(path, dn, order)
    da = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 48, "x": 48})
    assert list(da.band.values) == list(range(1, 13))  # what rioxarray gives
    got = _physical(da, modality="s2_l2a", **run)
    want = _physical(open_geotiff(path, "s2_l2a", chunks={"y": 48, "x": 48}), **run)
    assert list(got.band.values) == band_names("s2_l2a")
    np.testing.assert_array_equal(got.values, want.values)
    assert np.isnan(got.values[:, :, :8, :8]).all()
    # values match the file: band B02 is the 11th band of the file
    np.testing.assert_allclose(got.sel(band="B02").values[0, 8:, 8:],
                               dn[1, 8:, 8:] * 1e-4 - 0.1, rtol=1e-5, atol=1e-6)


def test_rioxarray_numbered_bands_need_names(tmp_path, run):
    rng = np.random.default_rng(1)
    dn = rng.integers(1100, 5000, size=(12, 64, 64)).astype("uint16")
    path = tmp_path / "plain.tif"
    _write_s2_tif(path, dn, band_names("s2_l2a"), described=False)
    da = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 64, "x": 64})
    with pytest.raises(InputError, match=r"numbered 1\.\.12.*bands=\["):
        xterrafm.embed(da, modality="s2_l2a", **run)
    named = _physical(da, modality="s2_l2a", bands=band_names("s2_l2a"), **run)
    np.testing.assert_allclose(named.values[0], dn * 1e-4 - 0.1, rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="names 3 bands but the cube has 12"):
        xterrafm.embed(da, modality="s2_l2a", bands=["B01", "B02", "B03"], **run)
    aliases = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
               "nir08", "nir09", "swir16", "swir22"]
    by_alias = _physical(da, modality="s2_l2a", bands=aliases, **run)
    np.testing.assert_array_equal(by_alias.values, named.values)


# -- Sentinel-1: decibels, digital numbers ----------------------------------------------------
def test_sentinel1_decibels_are_refused_or_converted(make_cube, run):
    cube = make_cube(64, 64, modality="s1", n_dates=1)
    db = 10 * np.log10(cube)
    db.attrs = dict(cube.attrs)
    with pytest.raises(InputError, match="decibels.*calibration='db'"):
        xterrafm.embed(db, **run)
    converted = _physical(db, calibration="db", **run).values
    np.testing.assert_allclose(converted, cube.values, rtol=1e-5)
    db.attrs["units"] = "dB"  # the metadata says it: converted without asking
    np.testing.assert_allclose(_physical(db, **run).values, cube.values, rtol=1e-5)
    np.testing.assert_allclose(_embed(db, **run), _embed(cube, **run), rtol=1e-4, atol=1e-4)


def test_sentinel1_digital_numbers_are_refused_naming_grd(make_cube, run):
    cube = make_cube(64, 64, modality="s1", n_dates=1)
    dn = cube * 3000.0
    dn.attrs = dict(cube.attrs)
    with pytest.raises(InputError, match="GRD"):
        xterrafm.embed(dn, **run)
    grd_dn = (cube * 3000).astype("uint16")
    grd_dn.attrs = dict(cube.attrs)
    with pytest.raises(InputError, match="linear power.*RTC"):
        xterrafm.embed(grd_dn, **run)


# -- other refusals ----------------------------------------------------------------------------
def test_empty_cube_and_bad_settings_are_named(make_cube, run):
    cube = make_cube(32, 32, modality="s2_l2a")
    with pytest.raises(InputError, match="the cube is empty"):
        xterrafm.embed(cube.isel(y=slice(0, 0), x=slice(0, 0)), **run)
    with pytest.raises(UsageError, match="calibration must be one of"):
        xterrafm.embed(cube, calibration="percent", **run)
    with pytest.raises(UsageError, match="offset has 3 values"):
        xterrafm.embed((cube * 1e4).astype("uint16").assign_attrs(modality="s2_l2a"),
                       calibration={"scale": 1e-4, "offset": [0, 0, 0]}, **run)
    with pytest.raises(UsageError, match="bands= names"):
        xterrafm.embed(cube, bands={"B99": "B01"}, **run)


def test_geotiff_reader_cubes_sentinel1_db_and_no_double_calibration(tmp_path, make_cube, run):
    cube = make_cube(64, 64, modality="s1", n_dates=1)
    db_path = tmp_path / "s1_db.tif"
    (10 * np.log10(cube.isel(time=0))).rio.to_raster(db_path)
    db_cube = open_geotiff(db_path, "s1")  # the reader applies nothing to Sentinel-1
    assert db_cube.attrs["calibration_source"] == "none"
    with pytest.raises(InputError, match="decibels"):
        xterrafm.embed(db_cube, **run)
    np.testing.assert_allclose(_physical(db_cube, calibration="db", **run).values,
                               cube.values, rtol=1e-5)
    s2_path = tmp_path / "s2.tif"
    (make_cube(64, 64, modality="s2_l2a", n_dates=1).isel(time=0) * 10000 + 1000).astype(
        "uint16").rio.to_raster(s2_path)
    s2 = open_geotiff(s2_path, "s2_l2a")  # DN/10000 - 0.1 applied by the reader
    assert 0.0 < float(np.nanmedian(_physical(s2, **run).values)) < 0.5
    with pytest.raises(UsageError, match="a second time"):
        xterrafm.embed(s2, calibration="s2-dn", **run)
