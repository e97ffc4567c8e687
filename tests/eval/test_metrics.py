"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xterrafm.eval.metrics import (
    accuracy,
    average_precision,
    confusion_matrix,
    mean_average_precision,
    mean_iou,
    micro_f1,
    per_class_iou,
)


def test_accuracy_counts_matches():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert accuracy(torch.tensor([0, 1]), np.array([0, 1])) == 1.0


def test_accuracy_rejects_length_mismatch_and_empty():
    with pytest.raises(ValueError, match="3 samples"):
        accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no samples"):
        accuracy([], [])


def test_micro_f1_hand_computed():
    # TP = 2, FP = 1, FN = 1 -> F1 = 4 / 6
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    y_pred = np.array([[1, 1, 0], [0, 1, 0]])
    assert micro_f1(y_true, y_pred) == pytest.approx(2 / 3)
    assert micro_f1(y_true, y_true) == 1.0
    assert micro_f1(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0


def test_average_precision_hand_computed():
    # positives ranked 1st and 3rd: precisions 1 and 2/3 -> AP = 5/6
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # a tie between a positive and a negative is one threshold: precision 1/2
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_mean_average_precision_skips_classes_without_positives():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.4, 0.3], [0.8, 0.3, 0.2], [0.7, 0.2, 0.1], [0.1, 0.1, 0.0]])
    # class 0: positives at ranks 1 and 3 -> 5/6; class 1: positive at rank 2 -> 1/2
    assert mean_average_precision(y, s) == pytest.approx((5 / 6 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="equal shape"):
        mean_average_precision(y, s[:, :2])


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix([0, 0, 1, 2, 2, 255], [0, 1, 1, 2, 0, 0], n_classes=3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], n_classes=3)


def test_mean_iou_hand_computed():
    t = np.array([0, 0, 1, 1, 2, 255])
    p = np.array([0, 1, 1, 1, 0, 2])
    # class 0: 1 / 3, class 1: 2 / 3, class 2: 0 / 1, class 3: absent (NaN, left out)
    iou = per_class_iou(t, p, n_classes=4, ignore_index=255)
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 0.0])
    assert np.isnan(iou[3])
    assert mean_iou(t, p, n_classes=4, ignore_index=255) == pytest.approx(1 / 3)
    assert mean_iou(t.reshape(2, 3), p.reshape(2, 3), 4, ignore_index=255) == pytest.approx(1 / 3)
