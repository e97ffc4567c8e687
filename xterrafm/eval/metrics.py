"""Scores for probes: accuracy, micro-F1, mean average precision, confusion matrix and mIoU.

All functions take numpy-compatible arrays (torch tensors are converted) and return Python
floats or numpy arrays. They are written here, not borrowed from scikit-learn, so that the
numbers the probes report are defined in one place and tested against hand-computed cases.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    from numpy.typing import ArrayLike

__all__ = [
    "accuracy",
    "average_precision",
    "confusion_matrix",
    "macro_accuracy",
    "mean_average_precision",
    "mean_iou",
    "micro_f1",
    "per_class_iou",
    "per_class_recall",
]


def _as_numpy(a: ArrayLike) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check_same_length(y_true: np.ndarray, y_pred: np.ndarray, what: str) -> None:
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"{what}: y_true has {y_true.shape[0]} samples but the predictions have "
            f"{y_pred.shape[0]}"
        )
    if y_true.shape[0] == 0:
        raise ValueError(f"{what}: no samples to score")


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Top-1 accuracy: the fraction of samples whose predicted label equals the true label.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (N,)
        True and predicted labels (any comparable dtype).

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    t, p = _as_numpy(y_true).ravel(), _as_numpy(y_pred).ravel()
    _check_same_length(t, p, "accuracy")
    return float(np.mean(t == p))


def per_class_recall(y_true: ArrayLike, y_pred: ArrayLike) -> dict:
    """Recall of every class present in the truth: the share of its samples predicted as it.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (N,)
        True and predicted labels (any comparable dtype).

    Returns
    -------
    dict
        ``{label: recall}`` for each distinct label of ``y_true``, in sorted order.
    """
    t, p = _as_numpy(y_true).ravel(), _as_numpy(y_pred).ravel()
    _check_same_length(t, p, "per_class_recall")
    return {c.item() if hasattr(c, "item") else c: float(np.mean(p[t == c] == c))
            for c in np.unique(t)}


def macro_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Macro-averaged accuracy (balanced accuracy): the mean of the per-class recalls.

    Every class present in ``y_true`` counts equally, however rare, so a classifier that
    ignores the rare classes of a long-tailed set scores low even when its accuracy is high.

    Returns
    -------
    float
        In [0, 1].
    """
    return float(np.mean(list(per_class_recall(y_true, y_pred).values())))


def micro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Micro-averaged F1 of multi-label predictions.

    True positives, false positives and false negatives are summed over all samples and classes;
    F1 = 2 TP / (2 TP + FP + FN).

    Parameters
    ----------
    y_true, y_pred : array-like of {0, 1} or bool, shape (N, C)
        Multi-hot true labels and binary predictions.

    Returns
    -------
    float
        Micro-F1 in [0, 1]; 0.0 when there are neither true nor predicted positives.
    """
    t = _as_numpy(y_true).astype(bool)
    p = _as_numpy(y_pred).astype(bool)
    _check_same_length(t, p, "micro_f1")
    if t.shape != p.shape:
        raise ValueError(f"micro_f1: y_true shape {t.shape} != y_pred shape {p.shape}")
    tp = np.sum(t & p)
    fp = np.sum(~t & p)
    fn = np.sum(t & ~p)
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom > 0 else 0.0


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Average precision of one binary ranking: sum over recall steps of precision × Δrecall.

    Samples are ranked by decreasing score; samples with equal scores form one threshold (so the
    value does not depend on the order of ties). AP = Σ_n (R_n − R_{n−1}) P_n over the distinct
    score thresholds, the definition scikit-learn and most probe papers use.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (N,)
        Binary relevance.
    scores : array-like of float, shape (N,)
        Higher means more likely positive.

    Returns
    -------
    float
        AP in [0, 1]; NaN when there is no positive sample.
    """
    t = _as_numpy(y_true).astype(bool).ravel()
    s = _as_numpy(scores).astype(np.float64).ravel()
    _check_same_length(t, s, "average_precision")
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, t_sorted = s[order], t[order]
    tp = np.cumsum(t_sorted)
    fp = np.cumsum(~t_sorted)
    # keep the last index of every run of equal scores: one threshold per distinct score
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def mean_average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Mean over classes of the per-class average precision (macro mAP) of multi-label scores.

    Classes with no positive sample in ``y_true`` have no defined AP and are left out of the
    mean.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (N, C)
        Multi-hot true labels.
    scores : array-like of float, shape (N, C)
        Per-class scores (probabilities, logits, kNN vote shares).

    Returns
    -------
    float
        mAP in [0, 1].
    """
    t = _as_numpy(y_true)
    s = _as_numpy(scores)
    if t.ndim != 2 or t.shape != s.shape:
        raise ValueError(
            f"mean_average_precision needs y_true and scores of equal shape (N, C); got "
            f"{t.shape} and {s.shape}"
        )
    aps = np.array([average_precision(t[:, c], s[:, c]) for c in range(t.shape[1])])
    if np.all(np.isnan(aps)):
        raise ValueError("mean_average_precision: no class has a positive sample")
    return float(np.nanmean(aps))


def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_classes: int | None = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Confusion matrix of integer labels: rows are true classes, columns predicted classes.

    Parameters
    ----------
    y_true, y_pred : array-like of int, any shape (flattened), equal sizes
        Class indices in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes; default ``max(y_true, y_pred) + 1``.
    ignore_index : int, optional
        Samples whose true label equals this value are not counted.

    Returns
    -------
    numpy.ndarray of int64, shape (n_classes, n_classes)
    """
    t = _as_numpy(y_true).ravel()
    p = _as_numpy(y_pred).ravel()
    _check_same_length(t, p, "confusion_matrix")
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    if n_classes is None:
        n_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(
                f"confusion_matrix: {name} holds labels outside [0, {n_classes}): "
                f"min {a.min()}, max {a.max()}"
            )
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class_iou(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Intersection over union per class, TP / (TP + FP + FN).

    Parameters
    ----------
    y_true, y_pred : array-like of int, any shape, equal sizes
        Per-pixel class indices.
    n_classes : int
        Number of classes.
    ignore_index : int, optional
        Pixels whose true label equals this value are not counted.

    Returns
    -------
    numpy.ndarray of float64, shape (n_classes,)
        IoU per class; NaN for classes absent from both truth and prediction.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes, ignore_index).astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_classes: int,
    ignore_index: int | None = None,
) -> float:
    """Mean IoU over the classes present in the truth or the prediction (see `per_class_iou`).

    Returns
    -------
    float
        mIoU in [0, 1].
    """
    iou = per_class_iou(y_true, y_pred, n_classes, ignore_index)
    if np.all(np.isnan(iou)):
        raise ValueError("mean_iou: no pixel left to score")
    return float(np.nanmean(iou))
