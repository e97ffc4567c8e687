"""Synthetic land-cover maps: smooth, blob-like regions of ESA WorldCover classes."""

from __future__ import annotations

from xterrafm._imports import import_gate
from xterrafm.datasets.fields import smooth_field
from xterrafm.worldcover import WORLDCOVER_CLASSES

with import_gate():
    import numpy as np

__all__ = ["CLASS_PRIOR", "make_landcover"]

#: Additive preference of each class in the arg-max competition: positive values make a class
#: more common. Keeps the rarer classes (mangrove, moss, snow) smaller, as in real scenes.
CLASS_PRIOR: dict[int, float] = {
    10: 0.35, 20: 0.10, 30: 0.25, 40: 0.35, 50: 0.15, 60: 0.05,
    70: -0.15, 80: 0.15, 90: -0.05, 95: -0.15, 100: -0.15,
}


def make_landcover(
    rng: np.random.Generator, shape: tuple[int, int], region_px: float = 32.0
) -> np.ndarray:
    """Draw a land-cover map of ESA WorldCover classes.

    Each class gets a smooth random field (plus :data:`CLASS_PRIOR`); every pixel takes the
    class whose field is largest. The result is a patchwork of compact regions whose typical
    diameter is a few times ``region_px``: 224 px windows hold several classes while 16 px
    patches are mostly pure.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    shape : (int, int)
        ``(height, width)`` in pixels.
    region_px : float
        Correlation length of the class fields in pixels.

    Returns
    -------
    numpy.ndarray, shape ``shape``, uint8
        WorldCover class values (10, 20, ..., 100); never 0.
    """
    classes = list(WORLDCOVER_CLASSES)
    best = np.full(shape, -np.inf, dtype=np.float32)
    out = np.zeros(shape, dtype=np.uint8)
    for k in classes:
        f = smooth_field(rng, shape, region_px)
        f += np.float32(CLASS_PRIOR[k])
        win = f > best
        best[win] = f[win]
        out[win] = k
    return out
