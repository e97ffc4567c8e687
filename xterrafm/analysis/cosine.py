"""The numpy kernel of every cosine in :mod:`xterrafm.analysis`: computed in float64, returned
as float32, NaN where a vector has a NaN or zero length.

Cosines within 1e-12 of ±1 are snapped to ±1: float64 rounding of a vector with itself gives
``1 - 2e-16`` or so, and "identical" should read as exactly 1 (similarity) and 0 (change).
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["SNAP", "cosine_along"]

#: Cosines closer than this to ±1 are reported as ±1.
SNAP = 1e-12


def cosine_along(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """Cosine of the angle between the vectors of ``a`` and ``b`` along ``axis``.

    Parameters
    ----------
    a, b : ndarray
        Broadcastable arrays; the vectors lie along ``axis`` (e.g. ``(time, D, y, x)`` and a
        query reshaped to ``(1, D, 1, 1)``).
    axis : int
        Axis of the vector components (dropped from the result).

    Returns
    -------
    ndarray float32
        Values in [-1, 1]; NaN where either vector has a NaN component or zero length.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    num = (a64 * b64).sum(axis=axis)
    den = np.sqrt((a64 * a64).sum(axis=axis)) * np.sqrt((b64 * b64).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = num / den
    cos = np.where(den > 0, cos, np.nan)
    cos = np.where(np.abs(np.abs(cos) - 1.0) < SNAP, np.sign(cos), cos)
    return np.clip(cos, -1.0, 1.0).astype(np.float32)
