"""open_geotiff: one file per band, multi-band files, same contract as load_stac."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from tests.helpers.counting import raise_if_dask_computes
from xterrafm.bands import band_names
from xterrafm.io import load_stac, open_geotiff


def test_band_files_match_load_stac(synthetic_scene):
    sc = synthetic_scene
    files = [sc.band_paths["s2_l2a"][d] for d in range(len(sc.dates))]
    with raise_if_dask_computes():
        cube = open_geotiff(files, "s2_l2a", times=sc.dates, processing_baseline="05.10")
        assert cube.dims == ("time", "band", "y", "x")
        assert cube.dtype == np.float32
        assert list(cube.band.values) == band_names("s2_l2a")
        assert cube.chunks[1] == (12,)
        assert cube.rio.crs == sc.crs
        assert cube.odc.geobox == sc.geobox  # 20/60 m files resampled onto the 10 m grid
        assert cube.attrs["modality"] == "s2_l2a"
        assert len(cube.attrs["item_ids"]) == 2
    stac = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a")
    np.testing.assert_allclose(cube.values, stac.values, atol=1e-6)
    np.testing.assert_array_equal(cube.time.values, stac.time.values)


def test_list_in_band_order_and_aliases(synthetic_scene):
    sc = synthetic_scene
    paths = sc.band_paths["s1"][0]
    by_list = open_geotiff([paths["VV"], paths["VH"]], "s1")
    by_alias = open_geotiff({"vh": paths["VH"], "vv": paths["VV"]}, "s1")
    np.testing.assert_array_equal(by_list.values, by_alias.values)
    with rasterio.open(paths["VV"]) as src:
        np.testing.assert_array_equal(by_list.isel(time=0).sel(band="VV").values, src.read(1))
    assert by_list.attrs["units"] == "linear_power" and by_list.attrs["offset"] == [0.0, 0.0]


def test_multiband_file_with_descriptions(synthetic_scene, tmp_path):
    sc = synthetic_scene
    paths = sc.band_paths["s1"][1]
    with rasterio.open(paths["VV"]) as vv, rasterio.open(paths["VH"]) as vh:
        profile = vv.profile | {"count": 2, "driver": "GTiff"}
        data = np.stack([vh.read(1), vv.read(1)])
    out = tmp_path / "s1_stack.tif"
    with rasterio.open(out, "w", **profile) as dst:  # stored VH first: descriptions decide
        dst.write(data)
        dst.set_band_description(1, "VH")
        dst.set_band_description(2, "VV")
    cube = open_geotiff(out, "s1", chunks={"y": 224, "x": 224})
    assert cube.chunks[2] == (224, 224)
    np.testing.assert_array_equal(cube.isel(time=0).sel(band="VV").values, data[1])
    assert np.isnan(cube.isel(time=0).values).any() == np.isnan(data).any()


def test_errors_name_the_problem(synthetic_scene, tmp_path):
    sc = synthetic_scene
    paths = dict(sc.band_paths["s2_l2a"][0])
    del paths["B8A"]
    with pytest.raises(ValueError, match="B8A"):
        open_geotiff(paths, "s2_l2a")
    with pytest.raises(ValueError, match="needs 12 bands"):
        open_geotiff([sc.band_paths["s2_l2a"][0]["B02"]], "s2_l2a")
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        open_geotiff([tmp_path / "nope.tif"], "s1")
    with pytest.raises(ValueError, match="one entry per date"):
        open_geotiff(sc.band_paths["s1"][0], "s1", times=sc.dates)
