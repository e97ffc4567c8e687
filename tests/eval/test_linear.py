"""Linear probes: known answers and reproducibility by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xterrafm.eval.linear import fit_linear_probe, linear_probe_score


def test_separable_features_give_full_accuracy(separable_blobs):
    x, y = separable_blobs
    assert linear_probe_score(x[:300], y[:300], x[300:], y[300:], epochs=30) == 1.0
    assert linear_probe_score(x[:300], y[:300], x[300:], y[300:], optimizer="lbfgs") == 1.0


def test_shuffled_labels_give_chance_accuracy(separable_blobs):
    x, _ = separable_blobs
    y = np.random.default_rng(11).integers(0, 4, size=x.shape[0])
    acc = linear_probe_score(x[:300], y[:300], x[300:], y[300:], epochs=30)
    std = math.sqrt(0.25 * 0.75 / 300)
    assert abs(acc - 0.25) < 4 * std


def test_same_seed_gives_identical_probe(separable_blobs):
    x, y = separable_blobs
    a = fit_linear_probe(x[:300], y[:300], epochs=5, batch_size=32, seed=1)
    b = fit_linear_probe(x[:300], y[:300], epochs=5, batch_size=32, seed=1)
    c = fit_linear_probe(x[:300], y[:300], epochs=5, batch_size=32, seed=2)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert a.score(x[300:], y[300:]) == b.score(x[300:], y[300:])
    assert not np.array_equal(a.weight, c.weight)  # the seed drives the shuffling


def test_multilabel_probe_scores_map():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=(400, 3))
    x = (y * 2.0 - 1.0) * 3 + rng.normal(size=(400, 3)) * 0.3  # class c readable from x[:, c]
    x = np.c_[x, rng.normal(size=(400, 5))].astype(np.float32)
    probe = fit_linear_probe(x[:200], y[:200], multilabel=True, epochs=50)
    assert probe.score(x[200:], y[200:]) == pytest.approx(1.0)
    assert probe.predict(x[200:]).shape == (200, 3)
    np.testing.assert_array_equal(probe.predict(x[200:]), y[200:].astype(bool))


def test_labels_keep_their_values(separable_blobs):
    x, y = separable_blobs
    names = np.array(["crop", "tree", "water", "urban"])[y]
    probe = fit_linear_probe(x[:300], names[:300], epochs=20)
    assert set(probe.predict(x[300:])) <= set(names)
    assert probe.score(x[300:], names[300:]) == 1.0
    with pytest.raises(ValueError, match="features of shape"):
        probe.predict(x[:, :3])
