"""Weighted k-nearest-neighbour classification of embeddings (the TerraFM paper's kNN probe).

Similarity is the cosine of the angle between embeddings. Each test sample takes its ``k``
most similar training samples; neighbour ``j`` votes with weight ``exp(sim_j / T)``
(``T = 0.07`` by default, the DINO/TerraFM protocol). Single-label: the class with the largest
summed weight wins. Multi-label: one binary kNN per class on the same neighbours; the score of
class ``c`` is the weighted share of neighbours that carry ``c``, and ``c`` is predicted when
that share exceeds 0.5 (positive votes outweigh negative votes).

The test set is processed in chunks so that the similarity matrix held at any time stays
below a fixed size (``chunk_size`` test rows × all training rows).

torch is imported when a kNN runs, not with this module, so that importing
:mod:`xterrafm.eval` (as ``xterrafm --help`` does) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import torch

from xterrafm.eval.class_balance import class_weights
from xterrafm.eval.metrics import accuracy, micro_f1
from xterrafm.eval.splits import subsample_training_set

__all__ = ["KNNScores", "knn", "knn_accuracy", "knn_f1", "knn_scores"]

#: Bytes the similarity block of one chunk may take (float32), which sets the chunk size.
SIMILARITY_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class KNNScores:
    """Per-class vote shares of a kNN classification.

    Attributes
    ----------
    scores : numpy.ndarray of float32, shape (M, C)
        Single-label: weighted vote share of each class (rows sum to 1). Multi-label: weighted
        share of neighbours carrying each class, in [0, 1].
    classes : numpy.ndarray, shape (C,)
        Single-label: the class label of each column (sorted unique training labels).
        Multi-label: the column indices ``0..C-1``.
    """

    scores: np.ndarray
    classes: np.ndarray


def _as_float_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    with import_gate():
        import torch

    t = a.detach().cpu() if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    t = t.to(torch.float32)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples, features); got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} holds no samples")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds NaN or infinite values; drop those rows first")
    return t


def _labels_numpy(a: ArrayLike) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def knn_scores(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
    multilabel: bool = False,
    train_fraction: float = 1.0,
    seed: int = 0,
    chunk_size: int | None = None,
    class_weight: str | None = None,
) -> KNNScores:
    """Per-class kNN vote shares of test embeddings against labelled training embeddings.

    Parameters
    ----------
    train_x : array-like of float, shape (N, D)
        Training embeddings.
    train_y : array-like, shape (N,) or (N, C)
        Training labels (any values) or multi-hot rows when ``multilabel``.
    test_x : array-like of float, shape (M, D)
        Test embeddings.
    k : int
        Number of neighbours (clamped to the training set size).
    temperature : float
        Vote weight is ``exp(cosine_similarity / temperature)``.
    multilabel : bool
        One binary kNN per class on multi-hot ``train_y``.
    train_fraction : float
        Use a seeded subsample of the training set (stratified for single-label); the paper's
        low-data protocol uses 0.01.
    seed : int
        Seed of that subsample.
    chunk_size : int, optional
        Test rows per similarity block; default keeps a block under 256 MiB.
    class_weight : {None, "balanced"}
        Single-label only: ``"balanced"`` multiplies each neighbour's vote by its class weight
        ``N / (C · n_c)`` (:mod:`xterrafm.eval.class_balance`, counted on the training set
        used), i.e. divides each class's vote share by its prior before the shares are
        normalised; ``None`` counts every neighbour alike.

    Returns
    -------
    KNNScores
    """
    with import_gate():
        import torch
        import torch.nn.functional as F

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    xtr = _as_float_tensor(train_x, "train_x")
    xte = _as_float_tensor(test_x, "test_x")
    y = _labels_numpy(train_y)
    if y.shape[0] != xtr.shape[0]:
        raise ValueError(
            f"train_y has {y.shape[0]} labels but train_x has {xtr.shape[0]} samples"
        )
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"train_x has {xtr.shape[1]} features but test_x has {xte.shape[1]}"
        )
    if multilabel and y.ndim != 2:
        raise ValueError(f"multilabel=True needs multi-hot train_y of shape (N, C); got {y.shape}")
    if not multilabel and y.ndim != 1:
        raise ValueError(
            f"single-label train_y must be 1-D; got shape {y.shape} (pass multilabel=True for "
            "multi-hot labels)"
        )

    if train_fraction != 1.0:
        idx = subsample_training_set(y, train_fraction, seed=seed, multilabel=multilabel)
        xtr, y = xtr[torch.from_numpy(idx)], y[idx]

    if multilabel:
        if class_weight is not None:
            raise ValueError("class_weight applies to single-label kNN only")
        classes = np.arange(y.shape[1])
        targets = torch.from_numpy(y.astype(np.float32))  # (N, C)
    else:
        classes, codes = np.unique(y, return_inverse=True)
        targets = F.one_hot(torch.from_numpy(codes.astype(np.int64)), len(classes)).float()
        targets = targets * torch.from_numpy(class_weights(codes, len(classes), class_weight))

    n_train = xtr.shape[0]
    k_eff = min(k, n_train)
    if chunk_size is None:
        chunk_size = max(1, SIMILARITY_BLOCK_BYTES // (4 * n_train))
    xtr = F.normalize(xtr, dim=1)
    out = np.empty((xte.shape[0], len(classes)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, xte.shape[0], chunk_size):
            block = F.normalize(xte[start : start + chunk_size], dim=1)
            sim = block @ xtr.T  # (m, N) cosine similarities
            top_sim, top_idx = sim.topk(k_eff, dim=1)
            # subtract the row maximum before exp: shares are unchanged, overflow is avoided
            w = torch.exp((top_sim - top_sim[:, :1]) / temperature)  # (m, k)
            votes = torch.einsum("mk,mkc->mc", w, targets[top_idx])
            # weighted votes are renormalised so that single-label shares still sum to 1
            total = (w if class_weight is None else votes).sum(dim=1, keepdim=True)
            out[start : start + block.shape[0]] = (votes / total).numpy()
    return KNNScores(scores=out, classes=classes)


def knn(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, **options: Any) -> np.ndarray:
    """Classify test embeddings by weighted cosine kNN (see the module docstring).

    Parameters
    ----------
    train_x, train_y, test_x : array-like
        As for `knn_scores`.
    **options
        Keyword arguments of `knn_scores`: ``k``, ``temperature``, ``multilabel``,
        ``train_fraction``, ``seed``, ``chunk_size``, ``class_weight``.

    Returns
    -------
    numpy.ndarray
        Single-label: predicted labels, shape (M,), values taken from ``train_y``.
        Multi-label: per-class scores (weighted positive shares), float32, shape (M, C);
        threshold at 0.5 for binary predictions.
    """
    res = knn_scores(train_x, train_y, test_x, **options)
    if options.get("multilabel", False):
        return res.scores
    return res.classes[np.argmax(res.scores, axis=1)]


def knn_accuracy(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
                 **options: Any) -> float:
    """Top-1 accuracy of single-label kNN on a labelled test set.

    Parameters
    ----------
    train_x, train_y, test_x : array-like
        As for `knn_scores`.
    test_y : array-like, shape (M,)
        Test labels.
    **options
        Keyword arguments of `knn_scores` (``k``, ``temperature``, ``train_fraction``,
        ``seed``, ``chunk_size``).

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    return accuracy(_labels_numpy(test_y), knn(train_x, train_y, test_x, **options))


def knn_f1(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
           threshold: float = 0.5, **options: Any) -> float:
    """Micro-F1 of multi-label kNN (one binary kNN per class) on a multi-hot test set.

    A class is predicted when its weighted positive share exceeds ``threshold``.

    Parameters
    ----------
    train_x, train_y, test_x : array-like
        As for `knn_scores`; ``train_y`` multi-hot, shape (N, C).
    test_y : array-like, shape (M, C)
        Multi-hot test labels.
    threshold : float
        Share of positive votes above which a class is predicted.
    **options
        Keyword arguments of `knn_scores` (``k``, ``temperature``, ``train_fraction``,
        ``seed``, ``chunk_size``).

    Returns
    -------
    float
        Micro-F1 in [0, 1].
    """
    scores = knn(train_x, train_y, test_x, multilabel=True, **options)
    return micro_f1(_labels_numpy(test_y), scores > threshold)
