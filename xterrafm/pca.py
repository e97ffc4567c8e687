"""Principal components of embedding images, as colours people can look at.

:func:`pca_rgb` fits a PCA on the valid cells of a ``(embedding, y, x)`` array with numpy's
SVD, maps components 1-3 to red, green and blue (each stretched between its 2nd and 98th
percentile) and paints empty (NaN) cells black.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["pca_rgb"]


def pca_rgb(embeddings: np.ndarray, upscale: int = 1) -> np.ndarray:
    """First three principal components of an ``(embedding, y, x)`` array as an RGB image.

    Parameters
    ----------
    embeddings : numpy.ndarray, shape (D, H, W)
        Embedding vectors; NaN marks empty cells.
    upscale : int
        Nearest-neighbour enlargement factor for viewing.

    Returns
    -------
    numpy.ndarray, shape (H * upscale, W * upscale, 3), uint8
        Components 1-3 stretched to 0..255; empty cells are 0. With fewer than 3 components
        (D < 3 or fewer than 3 valid cells) the missing channels are 0.
    """
    d, h, w = embeddings.shape
    flat = embeddings.reshape(d, h * w).T.astype(np.float64)
    valid = np.isfinite(flat).all(axis=1)
    rgb = np.zeros((h * w, 3), dtype=np.uint8)
    if valid.sum() >= 2:
        x = flat[valid] - flat[valid].mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        comps = x @ vt[: min(3, vt.shape[0])].T
        lo, hi = np.percentile(comps, 2, axis=0), np.percentile(comps, 98, axis=0)
        scaled = (comps - lo) / np.where(hi > lo, hi - lo, 1.0)
        scaled[:, ~(hi > lo)] = 0.0
        rgb[valid, : comps.shape[1]] = np.clip(scaled * 255.0, 0, 255).round().astype(np.uint8)
    img = rgb.reshape(h, w, 3)
    return img.repeat(upscale, axis=0).repeat(upscale, axis=1) if upscale > 1 else img
