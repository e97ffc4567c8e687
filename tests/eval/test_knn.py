"""kNN on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xterrafm.eval.knn_probe import knn, knn_accuracy, knn_f1, knn_scores
from xterrafm.eval.splits import subsample_training_set

# 2-D training set; the test point [1, 0] has cosine similarities 1, 0, 1/sqrt(2), -1.
TRAIN_X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
TEST_X = np.array([[1.0, 0.0]])


def test_knn_votes_are_weighted_by_exp_similarity_over_temperature():
    y = np.array([0, 1, 1, 0])
    # k = 3 picks rows 0 (sim 1, class 0), 2 (sim 0.7071, class 1), 1 (sim 0, class 1)
    w = np.exp(np.array([1.0, 1 / math.sqrt(2), 0.0]) / 1.0)
    share0 = w[0] / w.sum()  # 0.47304...
    res = knn_scores(TRAIN_X, y, TEST_X, k=3, temperature=1.0)
    np.testing.assert_allclose(res.scores[0], [share0, 1 - share0], rtol=1e-5)
    assert share0 == pytest.approx(0.47304, abs=1e-5)
    # with T = 1 class 1 wins; with the sharp default T = 0.07 the nearest neighbour wins
    assert knn(TRAIN_X, y, TEST_X, k=3, temperature=1.0)[0] == 1
    assert knn(TRAIN_X, y, TEST_X, k=3)[0] == 0
    w = np.exp(np.array([1.0, 1 / math.sqrt(2), 0.0]) / 0.07)
    assert knn_scores(TRAIN_X, y, TEST_X, k=3).scores[0, 0] == pytest.approx(w[0] / w.sum())


def test_knn_keeps_label_values_and_clamps_k():
    y = np.array(["water", "crop", "crop", "water"])
    pred = knn(TRAIN_X, y, TEST_X, k=100, temperature=1.0)
    # all 4 neighbours: class water gets e + e^-1 against crop's 1 + e^0.7071
    assert pred[0] == "water"


def test_multilabel_knn_is_a_binary_vote_per_class():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = knn(TRAIN_X, y, TEST_X, k=3, temperature=1.0, multilabel=True)
    e, e7 = math.e, math.exp(1 / math.sqrt(2))
    np.testing.assert_allclose(scores[0], [(e + e7) / (e + e7 + 1), (1 + e7) / (e + e7 + 1)],
                               rtol=1e-5)
    test_y = np.array([[1, 1]])
    assert knn_f1(TRAIN_X, y, TEST_X, test_y, k=3, temperature=1.0) == 1.0
    assert knn_f1(TRAIN_X, y, TEST_X, test_y, k=3, temperature=1.0, threshold=0.6) == \
        pytest.approx(2 / 3)


def test_perfectly_separable_features_give_full_accuracy(separable_blobs):
    x, y = separable_blobs
    assert knn_accuracy(x[:300], y[:300], x[300:], y[300:]) == 1.0
    # the 1% protocol keeps one sample per class here, still enough for these blobs
    assert knn_accuracy(x[:300], y[:300], x[300:], y[300:], train_fraction=0.01) == 1.0


def test_shuffled_labels_give_chance_accuracy(separable_blobs):
    x, _ = separable_blobs
    rng = np.random.default_rng(7)
    n_classes = 4
    y = rng.integers(0, n_classes, size=x.shape[0])  # labels independent of the features
    n_test = 300
    acc = knn_accuracy(x[:300], y[:300], x[300:], y[300:])
    p = 1 / n_classes
    std = math.sqrt(p * (1 - p) / n_test)  # binomial standard deviation of the accuracy
    assert abs(acc - p) < 4 * std


def test_chunking_does_not_change_results(separable_blobs):
    x, y = separable_blobs
    a = knn_scores(x[:300], y[:300], x[300:], chunk_size=7).scores
    b = knn_scores(x[:300], y[:300], x[300:]).scores
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_training_fraction_is_stratified_and_seeded():
    y = np.repeat([0, 1, 2], [500, 300, 200])
    idx = subsample_training_set(y, 0.01, seed=3)
    np.testing.assert_array_equal(np.bincount(y[idx]), [5, 3, 2])
    np.testing.assert_array_equal(idx, subsample_training_set(y, 0.01, seed=3))
    assert not np.array_equal(idx, subsample_training_set(y, 0.01, seed=4))
    rare = np.r_[np.zeros(999, int), 1]
    assert 1 in rare[subsample_training_set(rare, 0.01)]  # no class disappears
    with pytest.raises(ValueError, match="train_fraction"):
        subsample_training_set(y, 0.0)


def test_bad_inputs_are_named():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="NaN"):
        knn(np.where(TRAIN_X == 0, np.nan, TRAIN_X), y, TEST_X)
    with pytest.raises(ValueError, match="features"):
        knn(TRAIN_X, y, np.ones((1, 3)))
    with pytest.raises(ValueError, match="labels"):
        knn(TRAIN_X, y[:3], TEST_X)
    with pytest.raises(ValueError, match="multilabel"):
        knn(TRAIN_X, np.eye(4), TEST_X)


def test_the_package_exports_the_function_knn_not_its_module():
    # xterrafm.eval imports lazily; the module defining knn must not shadow the function
    import importlib

    import xterrafm.eval

    module = importlib.import_module("xterrafm.eval.knn_probe")
    assert xterrafm.eval.knn is module.knn and callable(xterrafm.eval.knn)
    assert xterrafm.eval.fit_linear_probe.__module__ == "xterrafm.eval.linear"
