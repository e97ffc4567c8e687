"""Land-cover-aware sampling weights from per-tile class histograms.

Global class frequencies ``f_c`` come from the summed per-tile histograms (labelled pixels);
a tile's weight is ``w_t ∝ Σ_c p_t(c) · f_c^(-α)`` with ``p_t`` the tile's class *proportions*
among its labelled pixels, so that how much of a tile is labelled does not change its weight
(a tile with one labelled class weighs the same whether 10 % or 100 % of it is labelled), while
tiles holding rare classes are drawn more often (``α = 0``: every labelled tile alike;
``α = 1``: every class drawn equally often, for pure tiles). Unlabelled tiles get the mean weight.

:func:`sampled_class_frequencies` gives the class frequencies of what the sampler actually
draws, ``q_c ∝ Σ_t π_t p_t(c)``; the class-frequency-aware center of the loss reweights by
``q_c``, so that it corrects only what the sampler has not already corrected.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["class_frequencies", "class_proportions", "sampled_class_frequencies", "tile_weights"]


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
    """Sampling weight of every tile, ``w_t = Σ_c p_t(c) · f_c^(-α)``, normalised to mean 1.

    Parameters
    ----------
    class_counts : ndarray, shape (n_tiles, n_classes)
        Labelled pixels of each class per tile (only their proportions matter).
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
    w = class_proportions(class_counts) @ inv
    labelled = w > 0
    if not labelled.any():
        return np.ones(w.shape[0])
    w = w / w[labelled].mean()
    w[~labelled] = 1.0
    return w


def sampled_class_frequencies(class_counts: np.ndarray, weights: np.ndarray | None = None
                              ) -> np.ndarray:
    """Class frequencies of the samples drawn with ``weights``: ``q_c ∝ Σ_t π_t p_t(c)``.

    Parameters
    ----------
    class_counts : ndarray, shape (n_tiles, n_classes)
    weights : ndarray, shape (n_tiles,), optional
        Sampling weights (``π_t ∝ w_t``); ``None`` for uniform sampling. Shards draw from
        their own tiles only, so this is the expectation over the shard layouts, up to the
        difference between a shard's and the global weight sums.

    Returns
    -------
    ndarray, shape (n_classes,), float64
        Sums to 1 over the labelled samples (all zeros when nothing is labelled).
    """
    p = class_proportions(class_counts)
    pi = np.ones(p.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if pi.shape != (p.shape[0],) or (pi < 0).any():
        raise ValueError(f"weights must be {p.shape[0]} non-negative numbers")
    q = pi @ p
    s = q.sum()
    return q / s if s > 0 else q
