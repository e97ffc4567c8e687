"""Zarr round trips keep values, CRS and attributes; existing stores are never clobbered."""

from __future__ import annotations

import numpy as np
import pytest

from xterrafm.io import load_stac, open_zarr_cube, write_zarr_cube


@pytest.fixture(scope="module")
def s1_cube(synthetic_scene):
    return load_stac(synthetic_scene.item_collections["s1"], modality="s1")


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_round_trip_keeps_crs_and_attrs(s1_cube, synthetic_scene, tmp_path, zarr_format):
    store = tmp_path / "s1.zarr"
    write_zarr_cube(s1_cube, store, zarr_format=zarr_format)
    back = open_zarr_cube(store)
    assert back.chunks is not None  # lazy
    assert back.dims == s1_cube.dims and back.name == "s1"
    assert back.rio.crs == synthetic_scene.crs
    assert back.odc.geobox == synthetic_scene.geobox
    assert back.attrs["item_ids"] == s1_cube.attrs["item_ids"]
    assert back.attrs["modality"] == "s1"
    assert list(back.band.values) == ["VV", "VH"]
    np.testing.assert_array_equal(back.time.values, s1_cube.time.values)
    np.testing.assert_array_equal(back.values, s1_cube.values)


def test_existing_store_is_not_overwritten(s1_cube, tmp_path):
    store = tmp_path / "s1.zarr"
    write_zarr_cube(s1_cube, store)
    with pytest.raises(FileExistsError, match="mode='w'"):
        write_zarr_cube(s1_cube * 0, store)
    np.testing.assert_array_equal(open_zarr_cube(store).values, s1_cube.values)
    write_zarr_cube(s1_cube * 2, store, mode="w")
    np.testing.assert_array_equal(open_zarr_cube(store).values, 2 * s1_cube.values)


def test_append_along_time(s1_cube, tmp_path):
    store = tmp_path / "s1.zarr"
    write_zarr_cube(s1_cube.isel(time=[0]), store)
    write_zarr_cube(s1_cube.isel(time=[1]), store, mode="a", append_dim="time")
    back = open_zarr_cube(store)
    np.testing.assert_array_equal(back.values, s1_cube.values)


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        open_zarr_cube(tmp_path / "missing.zarr")
