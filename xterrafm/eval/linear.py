"""Linear probes on frozen embeddings: one linear layer trained with torch, reproducible by seed.

Single-label probes minimise cross-entropy and report top-1 accuracy; multi-label probes
minimise binary cross-entropy per class and report mean average precision (mAP).

Defaults (chosen for embeddings of a few hundred to a few hundred thousand samples):
features are standardised with the training mean and standard deviation; weights start at
zero (the problem is convex, so the start only matters for speed); AdamW with learning rate
0.1, weight decay 1e-4, batches of 256, 100 epochs, cosine decay of the learning rate to zero.
``optimizer="lbfgs"`` runs full-batch L-BFGS (``epochs`` iterations) with an L2 penalty of
``weight_decay / 2 · ||W||²`` instead, which suits small data sets. Training shuffles with a
``torch.Generator`` seeded by ``seed`` and runs on the CPU, so the same inputs and seed give
bit-identical weights and scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.eval.class_balance import class_weights
from xterrafm.eval.metrics import accuracy, mean_average_precision
from xterrafm.eval.probe_training import train_adamw_cosine

with import_gate():
    import numpy as np
    import torch
    import torch.nn.functional as F
    from numpy.typing import ArrayLike

__all__ = ["LinearProbe", "fit_linear_probe", "linear_probe_score"]


@dataclass(frozen=True)
class LinearProbe:
    """A trained linear probe: ``logits = ((x - mean) / scale) @ weight.T + bias``.

    Attributes
    ----------
    weight : numpy.ndarray of float32, shape (C, D)
    bias : numpy.ndarray of float32, shape (C,)
    mean, scale : numpy.ndarray of float32, shape (D,)
        Standardisation of the features (zeros and ones when it is off).
    classes : numpy.ndarray, shape (C,)
        Label of each output (single-label), or ``0..C-1`` (multi-label).
    multilabel : bool
    final_loss : float
        Training loss after the last epoch (without the penalty).
    """

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    classes: np.ndarray
    multilabel: bool
    final_loss: float

    def decision_function(self, x: ArrayLike) -> np.ndarray:
        """Logits of features ``x`` of shape (M, D); returns float32 (M, C)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"expected features of shape (M, {self.weight.shape[1]}), got {x.shape}"
            )
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict_scores(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities: softmax (single-label) or per-class sigmoid (multi-label)."""
        logits = torch.from_numpy(self.decision_function(x))
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
        return probs.numpy()

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predicted labels (M,) or, for multi-label, binary predictions (M, C) at p > 0.5."""
        logits = self.decision_function(x)
        if self.multilabel:
            return logits > 0
        return self.classes[np.argmax(logits, axis=1)]

    def score(self, x: ArrayLike, y: ArrayLike) -> float:
        """Top-1 accuracy (single-label) or mAP (multi-label) on labelled features."""
        if self.multilabel:
            return mean_average_precision(np.asarray(y), self.predict_scores(x))
        return accuracy(np.asarray(y), self.predict(x))


def fit_linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    *,
    multilabel: bool = False,
    epochs: int = 100,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    optimizer: str = "adamw",
    standardize: bool = True,
    class_weight: str | None = None,
    seed: int = 0,
) -> LinearProbe:
    """Train a linear probe on frozen features (see the module docstring for the defaults).

    Parameters
    ----------
    train_x : array-like of float, shape (N, D)
        Training features; must be finite.
    train_y : array-like, shape (N,) or (N, C)
        Labels (any values) or multi-hot rows when ``multilabel``.
    multilabel : bool
        Binary cross-entropy per class instead of softmax cross-entropy.
    epochs : int
        Passes over the data (AdamW) or L-BFGS iterations.
    lr : float, optional
        Peak learning rate of AdamW (default 0.1) or L-BFGS step size (default 1.0).
    weight_decay : float
        AdamW decoupled weight decay, or the L2 coefficient for L-BFGS.
    batch_size : int
        Minibatch size for AdamW.
    optimizer : {"adamw", "lbfgs"}
    standardize : bool
        Standardise features with the training mean and standard deviation.
    class_weight : {None, "balanced"}
        Single-label only: ``"balanced"`` weights each sample's cross-entropy by
        ``N / (C · n_c)`` (:mod:`xterrafm.eval.class_balance`), so that the probe is fitted as
        if every class were equally frequent; ``None`` weights all samples alike.
    seed : int
        Seeds the shuffling; same seed, same data → identical probe.

    Returns
    -------
    LinearProbe
    """
    if optimizer not in ("adamw", "lbfgs"):
        raise ValueError(f"optimizer must be 'adamw' or 'lbfgs', got {optimizer!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    x = np.asarray(train_x, dtype=np.float32)
    y = np.asarray(train_y)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"train_x must be a non-empty (N, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("train_x holds NaN or infinite values; drop those rows first")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"train_y has {y.shape[0]} labels but train_x has {x.shape[0]} rows")

    if multilabel:
        if y.ndim != 2:
            raise ValueError(f"multilabel=True needs multi-hot train_y (N, C); got {y.shape}")
        if class_weight is not None:
            raise ValueError("class_weight applies to single-label probes only")
        classes = np.arange(y.shape[1])
        target = torch.from_numpy(y.astype(np.float32))
        loss_fn = F.binary_cross_entropy_with_logits
    else:
        if y.ndim != 1:
            raise ValueError(f"single-label train_y must be 1-D; got shape {y.shape}")
        classes, codes = np.unique(y, return_inverse=True)
        target = torch.from_numpy(codes.astype(np.int64))
        per_class = torch.from_numpy(class_weights(codes, len(classes), class_weight))

        def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, labels, weight=per_class)

    if standardize:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    else:
        mean = np.zeros(x.shape[1], np.float32)
        scale = np.ones(x.shape[1], np.float32)
    xs = torch.from_numpy((x - mean) / scale)

    n_classes, n, dim = len(classes), x.shape[0], x.shape[1]
    weight = torch.zeros(n_classes, dim, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            [weight, bias], lr=1.0 if lr is None else lr, max_iter=epochs,
            history_size=20, line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn(xs @ weight.T + bias, target) + 0.5 * weight_decay * weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        train_adamw_cosine(
            [weight, bias], lambda idx: loss_fn(xs[idx] @ weight.T + bias, target[idx]), n,
            epochs=epochs, batch_size=batch_size, lr=0.1 if lr is None else lr,
            weight_decay=weight_decay, seed=seed,
        )

    with torch.no_grad():
        final_loss = float(loss_fn(xs @ weight.T + bias, target))
    return LinearProbe(
        weight=weight.detach().numpy().copy(),
        bias=bias.detach().numpy().copy(),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        classes=classes,
        multilabel=multilabel,
        final_loss=final_loss,
    )


def linear_probe_score(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    **fit_kwargs,
) -> float:
    """Fit a linear probe on the training set and score it on the test set.

    ``fit_kwargs`` go to `fit_linear_probe`. Returns top-1 accuracy (single-label) or mAP
    (``multilabel=True``).
    """
    probe = fit_linear_probe(train_x, train_y, **fit_kwargs)
    return probe.score(test_x, test_y)
