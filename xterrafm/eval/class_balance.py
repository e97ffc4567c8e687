"""Class weights that give every class the same total weight in a probe's training set.

A probe fitted on long-tailed labels learns the class prior as well as the features: a rare
class whose windows are well separated can still get recall 0 because predicting a common
class is cheaper. Weighting each training sample by ``n / (C · n_c)`` (``n`` samples, ``C``
classes, ``n_c`` samples of its class; scikit-learn's ``class_weight="balanced"``) fits the
probe as if the classes were equally frequent, so its macro-accuracy measures how well the
*features* separate the classes rather than how common they are.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["CLASS_WEIGHTS", "class_weights"]

#: Accepted values of the probes' ``class_weight`` argument.
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")


def class_weights(codes: np.ndarray, n_classes: int, class_weight: str | None) -> np.ndarray:
    """Weight of each class, float32 ``(n_classes,)``, for integer class ``codes`` ``(N,)``.

    ``class_weight=None`` gives ones; ``"balanced"`` gives ``N / (n_classes · count_c)``.
    Every class in ``0 .. n_classes - 1`` must occur in ``codes``.
    """
    if class_weight not in CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    if class_weight is None:
        return np.ones(n_classes, np.float32)
    counts = np.bincount(np.asarray(codes, np.int64), minlength=n_classes)
    if counts.shape[0] != n_classes or (counts == 0).any():
        raise ValueError("class_weight='balanced' needs every class in the training labels")
    return (counts.sum() / (n_classes * counts)).astype(np.float32)
