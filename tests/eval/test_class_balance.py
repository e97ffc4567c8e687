"""Class-balanced probes: every class weighs the same in the fit, whatever its frequency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xterrafm.eval.class_balance import class_weights
from xterrafm.eval.knn_probe import knn, knn_scores
from xterrafm.eval.linear import fit_linear_probe
from xterrafm.eval.metrics import per_class_recall

# test point [1, 0]: cosine similarities 1 (class 0), 0, 1/sqrt(2), -1 (class 1)
TRAIN_X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
TRAIN_Y = np.array([0, 1, 1, 1])
TEST_X = np.array([[1.0, 0.0]])


def test_balanced_weights_are_n_over_classes_times_count():
    np.testing.assert_allclose(class_weights(np.array([0, 1, 1, 1]), 2, "balanced"), [2.0, 2 / 3])
    np.testing.assert_array_equal(class_weights(np.array([0, 1, 1, 1]), 2, None), [1.0, 1.0])
    with pytest.raises(ValueError, match="every class"):
        class_weights(np.array([0, 0, 2]), 3, "balanced")
    with pytest.raises(ValueError, match="'balanced'"):
        class_weights(np.array([0, 1]), 2, "inverse")


def test_balanced_knn_divides_each_vote_share_by_the_class_prior():
    w = np.exp(np.array([1.0, 0.0, 1 / math.sqrt(2), -1.0]))  # T = 1, all 4 neighbours
    plain = w[0] / w.sum()
    res = knn_scores(TRAIN_X, TRAIN_Y, TEST_X, k=4, temperature=1.0)
    np.testing.assert_allclose(res.scores[0], [plain, 1 - plain], rtol=1e-5)
    assert knn(TRAIN_X, TRAIN_Y, TEST_X, k=4, temperature=1.0)[0] == 1  # the common class wins
    votes = np.array([2.0 * w[0], 2 / 3 * w[1:].sum()])  # weights 4 / (2 * count)
    res = knn_scores(TRAIN_X, TRAIN_Y, TEST_X, k=4, temperature=1.0, class_weight="balanced")
    np.testing.assert_allclose(res.scores[0], votes / votes.sum(), rtol=1e-5)
    assert knn(TRAIN_X, TRAIN_Y, TEST_X, k=4, temperature=1.0, class_weight="balanced")[0] == 0


def test_balanced_linear_probe_recovers_a_rare_class_the_plain_probe_gives_up():
    # two unit-variance classes at -1 and +1 on one axis, 95 : 5 in training. The plain probe
    # tends to the prior-shifted threshold x = ln(19) / 2 = 1.47 (rare recall 1 - Phi(0.47) =
    # 0.32); the balanced one to x = 0 (recall Phi(1) = 0.84 for both classes).
    rng = np.random.default_rng(3)
    n_common, n_rare = 1900, 100
    x = np.concatenate([rng.normal(-1, 1, n_common), rng.normal(1, 1, n_rare)])[:, None]
    y = np.array(["common"] * n_common + ["rare"] * n_rare)
    x_test = np.concatenate([rng.normal(-1, 1, 2000), rng.normal(1, 1, 2000)])[:, None]
    y_test = np.array(["common"] * 2000 + ["rare"] * 2000)
    recalls = {}
    for cw in (None, "balanced"):
        probe = fit_linear_probe(x, y, optimizer="lbfgs", class_weight=cw)
        recalls[cw] = per_class_recall(y_test, probe.predict(x_test))
    assert recalls[None]["rare"] < 0.5 < recalls[None]["common"]
    assert 0.75 < recalls["balanced"]["rare"] and 0.75 < recalls["balanced"]["common"]


def test_class_weight_is_refused_for_multilabel_probes():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match="single-label"):
        knn_scores(TRAIN_X, y, TEST_X, multilabel=True, class_weight="balanced")
    with pytest.raises(ValueError, match="single-label"):
        fit_linear_probe(TRAIN_X, y, multilabel=True, class_weight="balanced")
