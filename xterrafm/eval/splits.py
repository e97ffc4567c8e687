"""Choosing samples for probes: seeded training fractions and spatial train/test splits."""

from __future__ import annotations

import math

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    from numpy.typing import ArrayLike

__all__ = ["spatial_block_split", "subsample_training_set"]


def subsample_training_set(
    labels: ArrayLike, fraction: float, seed: int = 0, multilabel: bool = False
) -> np.ndarray:
    """Indices of a seeded subsample of a training set (the paper's 1 % protocol uses 0.01).

    Single-label sets are stratified: each class keeps ``round(fraction * n_class)`` samples,
    at least one, so no class disappears. Multi-label sets get a plain random subsample of
    ``ceil(fraction * N)`` samples (at least one).

    Parameters
    ----------
    labels : array-like, shape (N,) or (N, C)
        Class labels (single-label) or multi-hot rows (multi-label).
    fraction : float
        Share of samples to keep, in (0, 1].
    seed : int
        Seed of the numpy generator; the same seed gives the same indices.
    multilabel : bool
        Whether ``labels`` are multi-hot rows.

    Returns
    -------
    numpy.ndarray of int64, shape (M,)
        Sorted indices into ``labels``.
    """
    y = np.asarray(labels)
    n = y.shape[0]
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if n == 0:
        raise ValueError("cannot subsample an empty training set")
    if fraction == 1.0:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if multilabel:
        m = max(1, math.ceil(fraction * n))
        return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
    keep = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        m = max(1, int(round(fraction * members.size)))
        keep.append(rng.choice(members, size=m, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def spatial_block_split(rows: ArrayLike, cols: ArrayLike, block: int = 4) -> np.ndarray:
    """Train mask of a checkerboard of square blocks over a grid, to keep neighbours apart.

    Samples on a grid (embedding pixels) are grouped into ``block`` × ``block`` cells; cells
    alternate between train and test like the squares of a checkerboard. Neighbouring samples
    (which share pixels when windows overlap, and are spatially autocorrelated anyway) mostly
    land in the same set, so test scores are not inflated by leakage.

    Parameters
    ----------
    rows, cols : array-like of int, shape (N,)
        Grid row and column index of each sample.
    block : int
        Side of a checkerboard cell, in grid cells.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        True for training samples, False for test samples.
    """
    if block < 1:
        raise ValueError(f"block must be a positive number of grid cells, got {block}")
    r = np.asarray(rows, dtype=np.int64) // block
    c = np.asarray(cols, dtype=np.int64) // block
    return (r + c) % 2 == 0
