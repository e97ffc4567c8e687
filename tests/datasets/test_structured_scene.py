"""Structured synthetic land cover: long-tailed classes that the window spectrum does not give away."""

from __future__ import annotations

import numpy as np
import pytest

from xterrafm.datasets.patterns import PATTERNS, material_map
from xterrafm.datasets.structured import (
    STRUCTURED_CLASSES,
    make_structured_scene,
    write_structured_training_cube,
)
from xterrafm.errors import UsageError


@pytest.fixture(scope="module")
def scene():
    return make_structured_scene(seed=3, size=1024)


def test_deterministic_and_seed_dependent():
    a = make_structured_scene(seed=1, size=192)
    b = make_structured_scene(seed=1, size=192)
    c = make_structured_scene(seed=2, size=192)
    np.testing.assert_array_equal(a.cube.s2_l2a.values, b.cube.s2_l2a.values)
    np.testing.assert_array_equal(a.landcover, b.landcover)
    assert not np.array_equal(a.landcover, c.landcover)


def test_class_shares_are_long_tailed_as_specified(scene):
    shares = scene.class_shares()
    assert set(shares) == {c.code for c in STRUCTURED_CLASSES}
    for c in STRUCTURED_CLASSES:
        # regions are drawn whole, so a share misses its target by at most about half a region
        assert abs(shares[c.code] - c.share) < 0.012, (c.name, shares[c.code], c.share)
    rare = [c for c in STRUCTURED_CLASSES if c.share <= 0.01]
    assert len(rare) == 2 and max(shares.values()) > 20 * max(shares[c.code] for c in rare)
    # every region holds one class
    for r in np.unique(scene.regions)[:50]:
        assert np.unique(scene.landcover[scene.regions == r]).size == 1


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_pattern_keeps_an_overlapping_share_of_material_a(pattern):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64) + 0.5
    n = yy.size
    for duty in (0.35, 0.65):
        period = np.full(n, 8.0)
        params = {"theta": np.full(n, 0.4), "period": period, "phase": np.full(n, 0.3),
                  "duty": np.full(n, duty), "radius": period * np.sqrt(0.4 / np.pi),
                  "street": np.full(n, 2.5), "threshold": np.full(n, 0.0),
                  "region": np.zeros(n, np.int64)}
        from xterrafm.datasets.fields import smooth_field

        fields = {"coarse": smooth_field(rng, (256, 256), 3.0).ravel(),
                  "fine": smooth_field(rng, (256, 256), 1.2).ravel(),
                  "uniform": rng.random(n)}
        share = material_map(pattern, yy.ravel(), xx.ravel(), params, fields).mean()
        assert 0.2 < share < 0.8, (pattern, duty, share)
    with pytest.raises(UsageError, match="unknown pattern"):
        material_map("waves", yy.ravel(), xx.ravel(), params, fields)


def test_window_mean_spectrum_hardly_separates_the_texture_classes(scene):
    """Per-class means of the 32 px window mean spectrum lie well within the spread of a class."""
    s2 = scene.cube.s2_l2a.values[0]
    lc = scene.landcover
    w = 32
    n = lc.shape[0] // w
    means, labels = [], []
    for i in range(n):
        for j in range(n):
            lab = lc[i * w:(i + 1) * w, j * w:(j + 1) * w]
            values, counts = np.unique(lab, return_counts=True)
            if counts.max() < 0.9 * lab.size:
                continue
            means.append(s2[:, i * w:(i + 1) * w, j * w:(j + 1) * w].mean(axis=(1, 2)))
            labels.append(values[np.argmax(counts)])
    means, labels = np.asarray(means), np.asarray(labels)
    textures = [c.code for c in STRUCTURED_CLASSES if c.s1 == "plain" and c.share >= 0.03]
    spread = np.mean([means[labels == c].std(axis=0) for c in textures], axis=0)
    centres = np.array([means[labels == c].mean(axis=0) for c in textures])
    separation = np.abs(centres - centres.mean(axis=0)) / spread
    assert separation.max() < 1.0, np.round(separation, 2)


def test_sentinel1_context_separates_classes_with_the_same_optical_arrangement(scene):
    by = {c.code: c for c in STRUCTURED_CLASSES}
    assert by[90].pattern == by[30].pattern and by[95].pattern == by[10].pattern
    vh = scene.cube.s1.values[0, 1]
    flooded, plain = vh[scene.landcover == 90].mean(), vh[scene.landcover == 30].mean()
    bounce, trees = vh[scene.landcover == 95].mean(), vh[scene.landcover == 10].mean()
    assert flooded < 0.8 * plain and bounce > 1.2 * trees


def test_training_cube_round_trip_and_bad_arguments(tmp_path):
    from xterrafm.data.cube import TrainingCube
    from xterrafm.data.dataset import TileDataset

    path = write_structured_training_cube(tmp_path / "cube.zarr", seed=0, size=192,
                                          chunk_px=96)
    cube = TrainingCube(path)
    assert cube.modalities == ("s1", "s2_l2a") and cube.has_landcover and cube.chunks == (96, 96)
    assert "region" in cube.dataset.data_vars
    assert write_structured_training_cube(tmp_path / "cube.zarr", seed=5, size=192) == path
    ds = TileDataset(path, tile_size=48, sampling="weighted")
    assert ds.n_tiles == 16 and ds.sampled_class_frequencies.sum() == pytest.approx(1.0)
    with pytest.raises(UsageError, match="size"):
        make_structured_scene(size=50)
    with pytest.raises(UsageError, match="material pairs"):
        make_structured_scene(size=96, material_pairs=[(10, 70)])
