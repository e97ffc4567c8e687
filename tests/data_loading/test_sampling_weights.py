"""Land-cover sampling weights use class proportions; the class center corrects the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xterrafm.data.sampling import (
    class_frequencies,
    class_proportions,
    sampled_class_frequencies,
    tile_weights,
)
from xterrafm.pretrain.loss import inverse_frequency_weights


def test_partly_labelled_tile_weighs_like_a_fully_labelled_one():
    # tile 0: fully labelled common class; tile 1: 10 % labelled common class;
    # tile 2: unlabelled; tile 3: fully labelled rare class
    counts = np.array([[100, 0], [10, 0], [0, 0], [0, 100]])
    freq = class_frequencies(counts)
    w = tile_weights(counts, freq, alpha=0.5)
    assert w[1] == pytest.approx(w[0])  # only the proportions matter, not the labelled count
    assert w[3] > w[0]
    assert w[2] == pytest.approx(np.mean(w[[0, 1, 3]]))  # unlabelled: the mean weight
    np.testing.assert_allclose(w[[0, 1, 3]].mean(), 1.0)


def test_sampled_frequencies_follow_the_sampler():
    rng = np.random.default_rng(0)
    # 500 pure tiles, class shares 0.8 / 0.15 / 0.05
    labels = rng.choice(3, size=500, p=[0.8, 0.15, 0.05])
    counts = np.eye(3, dtype=np.int64)[labels] * 64
    f = class_frequencies(counts)
    np.testing.assert_allclose(sampled_class_frequencies(counts), f)  # uniform sampling
    for alpha in (0.5, 1.0):
        q = sampled_class_frequencies(counts, tile_weights(counts, f, alpha))
        want = f ** (1 - alpha) / (f ** (1 - alpha)).sum()
        np.testing.assert_allclose(q, want, rtol=1e-9)
    with pytest.raises(ValueError, match="non-negative"):
        sampled_class_frequencies(counts, -np.ones(500))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_class_center_weights_balance_classes_exactly_once(alpha):
    """Weighted by q (what is drawn), every class gets the same total weight in expectation;
    weighted by f (the scene) on top of the sampler, rare classes would be over-weighted."""
    f_true = np.array([0.7, 0.2, 0.08, 0.02])
    labels = np.repeat(np.arange(4), (f_true * 1000).astype(int))
    counts = np.eye(4, dtype=np.int64)[labels] * 32
    f = class_frequencies(counts)
    w_tiles = tile_weights(counts, f, alpha)
    pi = w_tiles / w_tiles.sum()
    props = torch.from_numpy(class_proportions(counts))
    q = sampled_class_frequencies(counts, w_tiles)
    w = inverse_frequency_weights(props, torch.from_numpy(q), 1.0).double().numpy()
    mass = np.array([(pi * w)[labels == c].sum() for c in range(4)])  # expected weight per class
    np.testing.assert_allclose(mass / mass.sum(), 0.25, rtol=1e-6)
    compounded = inverse_frequency_weights(props, torch.from_numpy(f), 1.0).double().numpy()
    cmass = np.array([(pi * compounded)[labels == c].sum() for c in range(4)])
    if alpha > 0:  # the old weighting: the rarest class gets more than its balanced share
        assert cmass[3] / cmass.sum() > 0.25 * 1.5
