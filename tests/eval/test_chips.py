"""Labelled GeoTIFF chips embedded on the fly."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from xterrafm.eval.chips import embed_chips, find_chips, read_chip
from xterrafm.eval.knn_probe import knn_accuracy
from xterrafm.normalization import normalize
from xterrafm.weights import load_model


def _write_chip(path, arr, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=arr.dtype, crs="EPSG:32632",
                       transform=from_origin(600_000, 5_100_000, 10, 10), nodata=nodata) as dst:
        dst.write(arr)


@pytest.fixture
def chip_folder(tmp_path):
    """Sentinel-1 chips (VV, VH linear power) of two classes with different backscatter."""
    rng = np.random.default_rng(0)
    for name, level in (("water", 0.002), ("urban", 0.3)):
        (tmp_path / name).mkdir()
        for i in range(4):
            chip = (level * rng.gamma(4.0, 0.25, size=(2, 32, 32))).astype(np.float32)
            _write_chip(tmp_path / name / f"{i}.tif", chip)
    (tmp_path / "water" / "notes.txt").write_text("not a chip")
    return tmp_path


def test_find_chips_numbers_classes_by_sorted_folder_name(chip_folder):
    chips = find_chips(chip_folder)
    assert chips.class_names == ["urban", "water"]
    assert len(chips.paths) == 8
    np.testing.assert_array_equal(chips.labels, [0] * 4 + [1] * 4)
    assert all(p.suffix == ".tif" for p in chips.paths)


def test_embed_chips_matches_the_model_run_by_hand(chip_folder):
    torch.set_num_threads(1)
    model = load_model("terrafm-tiny")
    chips = find_chips(chip_folder)
    emb = embed_chips(chips, model, "s1", batch_size=3)
    assert emb.shape == (8, model.embed_dim)
    first = read_chip(chips.paths[0], 2)
    with torch.no_grad():
        by_hand = model(torch.from_numpy(normalize(first[None], "s1")), modality="s1").numpy()
    np.testing.assert_allclose(emb[0], by_hand[0], atol=1e-4)
    # leave-one-class-chip-out: each test chip's class comes from its neighbours
    test = np.array([0, 4])
    train = np.setdiff1d(np.arange(8), test)
    assert knn_accuracy(emb[train], chips.labels[train], emb[test], chips.labels[test], k=3) == 1.0


def test_chip_nodata_scale_and_offset(tmp_path):
    dn = np.full((2, 16, 16), 1500, np.uint16)
    dn[:, 0, 0] = 0
    _write_chip(tmp_path / "c.tif", dn, nodata=0)
    chip = read_chip(tmp_path / "c.tif", 2, scale=1e-4, offset=-0.1)
    assert np.isnan(chip[:, 0, 0]).all()
    np.testing.assert_allclose(chip[:, 1, 1], 0.05, rtol=1e-5)
    with pytest.raises(ValueError, match="12"):
        read_chip(tmp_path / "c.tif", 12)


def test_bad_chip_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_chips(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="class_name"):
        find_chips(tmp_path)
    _write_chip(tmp_path / "empty_class" / "odd.tif", np.ones((2, 20, 20), np.float32))
    with pytest.raises(ValueError, match="not a multiple of 16"):
        embed_chips(find_chips(tmp_path), load_model("terrafm-tiny"), "s1")
