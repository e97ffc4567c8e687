"""Land-cover-aware sampling weights from per-tile class histograms.

Global class frequencies ``f_c`` come from the summed per-tile histograms; a tile's weight is
``w_t ∝ Σ_c h_t(c) · f_c^(-α)``, so tiles holding rare classes are drawn more often
(``α = 0``: weight ∝ labelled pixels; ``α = 1``: every class equally likely per pixel drawn).
The same ``f_c`` feed the class-frequency-aware center of the loss.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["class_frequencies", "class_proportions", "tile_weights"]


def class_frequencies(class_counts: np.ndarray) -> np.ndarray:
    """Global class frequencies from per-tile pixel counts.

    Parameters
    ----------
    class_counts : ndarray, shape (n_tiles, n_classes)
        Pixels of each class in each tile.

    Returns
    -------
    ndarray, shape (n_classes,), float64
        Frequencies summing to 1 (all zeros when nothing is labelled).
    """
    total = np.asarray(class_counts, dtype=np.float64).sum(axis=0)
    s = total.sum()
    return total / s if s > 0 else total


def class_proportions(class_counts: np.ndarray) -> np.ndarray:
    """Per-tile class proportions ``p_t(c) = h_t(c) / Σ_c h_t(c)`` (rows of zeros if unlabelled)."""
    h = np.asarray(class_counts, dtype=np.float64)
    s = h.sum(axis=-1, keepdims=True)
    return np.divide(h, s, out=np.zeros_like(h), where=s > 0)


def tile_weights(class_counts: np.ndarray, frequencies: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Sampling weight of every tile, ``w_t = Σ_c h_t(c) · f_c^(-α)``, normalised to mean 1.

    Parameters
    ----------
    class_counts : ndarray, shape (n_tiles, n_classes)
    frequencies : ndarray, shape (n_classes,)
    alpha : float
        Exponent of the inverse frequency (0.5 by default).

    Returns
    -------
    ndarray, shape (n_tiles,), float64
        Positive weights; tiles without any labelled pixel get the mean weight (1).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    f = np.asarray(frequencies, dtype=np.float64)
    inv = np.zeros_like(f)
    inv[f > 0] = f[f > 0] ** (-alpha)
    w = np.asarray(class_counts, dtype=np.float64) @ inv
    labelled = w > 0
    if not labelled.any():
        return np.ones(w.shape[0])
    w = w / w[labelled].mean()
    w[~labelled] = 1.0
    return w
