"""load_stac on the synthetic scene: contract, calibration, naming styles, masking, errors."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest
import rasterio

from tests.helpers.counting import raise_if_dask_computes
from xterrafm.bands import band_names
from xterrafm.io import BandNotFoundError, load_stac


def _dn(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _s2_reflectance(dn: np.ndarray) -> np.ndarray:
    out = (dn.astype("float32") - 1000) * np.float32(1e-4)
    return np.where(dn == 0, np.nan, out)


def test_cube_contract_and_lazy(synthetic_scene):
    sc = synthetic_scene
    with raise_if_dask_computes():
        cube = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a")
        assert cube.dims == ("time", "band", "y", "x")
        assert cube.dtype == np.float32
        assert list(cube.band.values) == band_names("s2_l2a")
        assert cube.chunks[1] == (12,)  # all bands in one chunk
        assert all(c % 224 == 0 for c in cube.chunks[2] + cube.chunks[3])
        assert cube.rio.crs == sc.crs
        assert cube.odc.geobox == sc.geobox
        assert cube.attrs["modality"] == "s2_l2a"
        assert cube.attrs["units"] == "reflectance"
        assert cube.attrs["item_ids"] == sc.item_ids["s2_l2a"]
        assert cube.attrs["calibration_source"] == "s2:processing_baseline"
        assert cube.attrs["harmonized"] == 1
        np.testing.assert_allclose(cube.attrs["offset"], -0.1)
    assert list(cube.time.values) == [np.datetime64(d.replace(tzinfo=None), "ns")
                                      for d in sc.dates]


def test_values_10m_band_nodata_and_harmonisation(synthetic_scene):
    sc = synthetic_scene
    cube = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a").compute()
    for d in range(len(sc.dates)):
        want = _s2_reflectance(_dn(sc.band_paths["s2_l2a"][d]["B04"]))
        got = cube.isel(time=d).sel(band="B04").values
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(np.isnan(got), sc.nodata_masks["s2_l2a"][d])
    assert np.isnan(cube.isel(time=sc.nodata_date)).any()


@pytest.mark.parametrize("band,factor", [("B05", 2), ("B09", 6)])
def test_coarse_bands_on_10m_grid(synthetic_scene, band, factor):
    sc = synthetic_scene
    ic = sc.item_collections["s2_l2a"]
    near = load_stac(ic, modality="s2_l2a", resampling="nearest").isel(time=0).sel(band=band)
    want = _s2_reflectance(_dn(sc.band_paths["s2_l2a"][0][band]))
    up = np.repeat(np.repeat(want, factor, 0), factor, 1)[: sc.height, : sc.width]
    np.testing.assert_allclose(near.values, up, atol=1e-6)
    bil = load_stac(ic, modality="s2_l2a").isel(time=0).sel(band=band).values
    assert bil.shape == (sc.height, sc.width)
    # bilinear stays within the range of the source and differs from blocky nearest
    assert np.nanmin(bil) >= np.nanmin(want) - 1e-6 and np.nanmax(bil) <= np.nanmax(want) + 1e-6
    assert not np.allclose(bil, up, equal_nan=True)


def test_naming_styles_give_identical_cubes(synthetic_scene):
    sc = synthetic_scene
    pc = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a")
    es = load_stac(sc.item_collections["s2_l2a_earthsearch"], modality="s2_l2a")
    assert pc.attrs["calibration_source"] == "s2:processing_baseline"
    assert es.attrs["calibration_source"] == "raster:bands"
    np.testing.assert_array_equal(pc.values, es.values)


def test_l1c_raster_bands_offset_applied_once(synthetic_scene):
    sc = synthetic_scene
    cube = load_stac(sc.item_collections["s2_l1c"], modality="s2_l1c")
    want = _s2_reflectance(_dn(sc.band_paths["s2_l1c"][1]["B08"]))
    np.testing.assert_allclose(cube.isel(time=1).sel(band="B08").values, want, atol=1e-6)
    assert cube.attrs["modality"] == "s2_l1c"


def test_old_processing_baseline_has_no_offset(synthetic_scene):
    sc = synthetic_scene
    items = list(pystac.ItemCollection.from_file(str(sc.item_collections["s2_l2a"])))
    for it in items:
        it.properties["s2:processing_baseline"] = "03.01"
    # relative hrefs of an in-memory item need a location: give it the JSON's
    for it in items:
        it.set_self_href(str(sc.item_collections["s2_l2a"]))
    cube = load_stac(items, modality="s2_l2a")
    dn = _dn(sc.band_paths["s2_l2a"][0]["B03"])
    want = np.where(dn == 0, np.nan, dn.astype("float32") * np.float32(1e-4))
    np.testing.assert_allclose(cube.isel(time=0).sel(band="B03").values, want, atol=1e-6)
    assert cube.attrs["harmonized"] == 0


def test_s1_linear_power(synthetic_scene):
    sc = synthetic_scene
    cube = load_stac(sc.item_collections["s1"], modality="s1")
    assert list(cube.band.values) == ["VV", "VH"]
    assert cube.attrs["units"] == "linear_power"
    for d in range(len(sc.dates)):
        want = _dn(sc.band_paths["s1"][d]["VH"])
        np.testing.assert_array_equal(cube.isel(time=d).sel(band="VH").values, want)
    assert np.isnan(cube.isel(time=sc.nodata_date)).any()


def test_static_catalog_relative_hrefs(synthetic_scene):
    sc = synthetic_scene
    cat = load_stac(sc.catalog, modality="s2_l2a", collections=["sentinel-2-l2a-earthsearch"])
    ic = load_stac(sc.item_collections["s2_l2a_earthsearch"], modality="s2_l2a")
    assert sorted(cat.attrs["item_ids"]) == sorted(ic.attrs["item_ids"])
    np.testing.assert_array_equal(cat.values, ic.values)


def test_item_collection_object_and_datetime_filter(synthetic_scene):
    sc = synthetic_scene
    ic = pystac.ItemCollection.from_file(str(sc.item_collections["s1"]))
    for it in ic:
        it.set_self_href(str(sc.item_collections["s1"]))
    day = sc.dates[1].strftime("%Y-%m-%d")
    cube = load_stac(ic, modality="sentinel-1", datetime=day)
    assert cube.sizes["time"] == 1
    assert cube.attrs["item_ids"] == [sc.item_ids["s1"][1]]
    with pytest.raises(ValueError, match="no STAC items"):
        load_stac(ic, modality="s1", datetime="1999-01-01/1999-12-31")


def test_missing_band_names_band_item_and_keys(synthetic_scene, tmp_path):
    sc = synthetic_scene
    doc = json.loads(sc.item_collections["s2_l2a_earthsearch"].read_text())
    feat = doc["features"][1]
    del feat["assets"]["nir08"]  # B8A
    for a in feat["assets"].values():  # keep hrefs valid from the new location
        a["href"] = str((sc.item_collections["s2_l2a_earthsearch"].parent / a["href"]).resolve())
    doc["features"] = [feat]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BandNotFoundError) as ei:
        load_stac(path, modality="s2_l2a")
    msg = str(ei.value)
    assert "'B8A'" in msg and feat["id"] in msg and "'swir16'" in msg and "nir08" in msg


def test_scl_cloud_masking(synthetic_scene):
    sc = synthetic_scene
    ic = sc.item_collections["s2_l2a"]
    plain = load_stac(ic, modality="s2_l2a").isel(time=0).values
    masked = load_stac(ic, modality="s2_l2a", mask_clouds=True)
    assert masked.attrs["cloud_mask"] == "scl:3,8,9,10"
    scl = _dn(sc.scl_paths[0])
    cloud = np.isin(np.repeat(np.repeat(scl, 2, 0), 2, 1)[: sc.height, : sc.width], [8, 9])
    assert cloud.any()
    got = masked.isel(time=0).values
    assert np.isnan(got[:, cloud]).all()
    np.testing.assert_array_equal(got[:, ~cloud], plain[:, ~cloud])
    with pytest.raises(ValueError, match="SCL"):
        load_stac(sc.item_collections["s1"], modality="s1", mask_clouds=True)


def test_custom_chunks_and_bbox(synthetic_scene):
    sc = synthetic_scene
    cube = load_stac(sc.item_collections["s1"], modality="s1", chunks={"y": 224, "x": 224})
    assert cube.chunks[2] == (224, 224) and cube.chunks[3] == (224, 224)
    lon0, lat0, lon1, lat1 = sc.geobox.geographic_extent.boundingbox
    sub = load_stac(sc.item_collections["s1"], modality="s1",
                    bbox=(lon0, lat0, (lon0 + lon1) / 2, (lat0 + lat1) / 2))
    assert 0 < sub.sizes["x"] < sc.width and 0 < sub.sizes["y"] < sc.height


def test_missing_local_file_names_path(synthetic_scene, tmp_path):
    from xterrafm.io import AssetReadError

    sc = synthetic_scene
    doc = json.loads(sc.item_collections["s1"].read_text())
    for feat in doc["features"]:
        for a in feat["assets"].values():
            a["href"] = str((sc.item_collections["s1"].parent / a["href"]).resolve())
    gone = str(tmp_path / "gone_vh.tif")
    doc["features"][0]["assets"]["vh"]["href"] = gone
    path = tmp_path / "s1.json"
    path.write_text(json.dumps(doc))
    cube = load_stac(path, modality="s1")  # metadata only: fine
    with pytest.raises(AssetReadError, match="gone_vh.tif"):
        cube.compute()
    filled = load_stac(path, modality="s1", fill_failed=True).compute()
    assert np.isnan(filled.isel(time=0).sel(band="VH")).all()
    assert np.isfinite(filled.isel(time=0).sel(band="VV")).any()
