"""Training cubes: S1, S2 L1C, S2 L2A and land cover on one grid, saved to Zarr."""

from __future__ import annotations

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from tests.helpers.counting import raise_if_dask_computes
from xterrafm.io import (
    build_training_cube,
    load_stac,
    open_training_cube,
    training_modality,
    write_training_cube,
)


def test_training_cube_round_trip(synthetic_scene, tmp_path):
    sc = synthetic_scene
    s2 = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a")
    with raise_if_dask_computes():
        ds = build_training_cube(sc.geobox, s1=sc.item_collections["s1"],
                                 s2_l1c=sc.item_collections["s2_l1c"], s2_l2a=s2,
                                 landcover=sc.landcover_path)
    assert ds["s2_l2a"].dims == ("s2_l2a_time", "s2_l2a_band", "y", "x")
    assert ds["s1"].dims == ("s1_time", "s1_band", "y", "x")
    assert ds["landcover"].dims == ("y", "x") and ds["landcover"].dtype == np.uint8
    assert ds.odc.geobox == sc.geobox and ds.rio.crs == sc.crs
    assert ds.attrs["modalities"] == ["s1", "s2_l1c", "s2_l2a"]
    store = tmp_path / "train.zarr"
    write_training_cube(ds, store)
    back = open_training_cube(store)
    assert back.odc.geobox == sc.geobox
    np.testing.assert_array_equal(back["landcover"].values, sc.landcover)
    cube = training_modality(back, "s2_l2a")
    assert cube.dims == ("time", "band", "y", "x") and cube.rio.crs == sc.crs
    np.testing.assert_array_equal(cube.values, s2.values)
    s1 = load_stac(sc.item_collections["s1"], modality="s1")
    np.testing.assert_array_equal(training_modality(back, "s1").values, s1.values)
    with pytest.raises(FileExistsError):
        write_training_cube(ds, store)


def test_cubes_on_another_grid_are_reprojected(synthetic_scene):
    sc = synthetic_scene
    coarse = GeoBox.from_bbox(sc.geobox.extent.boundingbox, sc.crs, resolution=20)
    s1 = load_stac(sc.item_collections["s1"], modality="s1")
    with raise_if_dask_computes():
        ds = build_training_cube(coarse, s1=s1, landcover=sc.landcover_path)
    assert ds.odc.geobox == coarse
    assert ds["s1"].shape[-2:] == (sc.height // 2, sc.width // 2)
    lc = ds["landcover"].values
    assert set(np.unique(lc)) <= set(np.unique(sc.landcover))  # nearest: only real classes
    v = ds["s1"].values
    assert np.isfinite(v).mean() > 0.9 and v.dtype == np.float32


def test_errors(synthetic_scene):
    sc = synthetic_scene
    with pytest.raises(ValueError, match="at least one"):
        build_training_cube(sc.geobox)
    s1 = load_stac(sc.item_collections["s1"], modality="s1")
    with pytest.raises(ValueError, match="modality"):
        build_training_cube(sc.geobox, s2_l2a=s1)
