"""Principal components of embedding images, as colours people can look at.

:func:`pca_rgb` fits a PCA on the valid cells of a ``(embedding, y, x)`` array with numpy's
SVD, maps components 1-3 to red, green and blue (each stretched between its 2nd and 98th
percentile) and paints empty (NaN) cells with a **magenta and white diagonal hatch**
(:func:`hatch_nodata`): any solid colour, black included, can be a PCA colour, a hatch cannot.
It is the one colouring of embeddings in xterrafm: the CLI's PNG preview
(:mod:`xterrafm.batch.preview`) and the notebook pictures (:mod:`xterrafm.analysis.pictures`)
both use it.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["HATCH_PERIOD", "NODATA_RGB", "hatch_nodata", "pca_components", "pca_rgb"]

#: Colour of the no-data hatch (magenta), alternating with white.
NODATA_RGB = (255, 0, 255)

#: Period of the hatch in output pixels (half magenta, half white).
HATCH_PERIOD = 8


def pca_components(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First three principal components of an ``(embedding, y, x)`` array, stretched to 0..1.

    Parameters
    ----------
    embeddings : numpy.ndarray, shape (D, H, W)
        Embedding vectors; NaN marks empty cells.

    Returns
    -------
    components : numpy.ndarray float64, shape (H, W, 3)
        Components 1-3, each stretched between its 2nd and 98th percentile and clipped to
        [0, 1]; 0 for empty cells and for missing components (D < 3 or fewer than 3 valid
        cells).
    valid : numpy.ndarray bool, shape (H, W)
        Cells with a finite embedding.
    """
    d, h, w = embeddings.shape
    flat = np.asarray(embeddings, dtype=np.float64).reshape(d, h * w).T
    valid = np.isfinite(flat).all(axis=1)
    out = np.zeros((h * w, 3), dtype=np.float64)
    if valid.sum() >= 2:
        x = flat[valid] - flat[valid].mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        comps = x @ vt[: min(3, vt.shape[0])].T
        lo, hi = np.percentile(comps, 2, axis=0), np.percentile(comps, 98, axis=0)
        scaled = (comps - lo) / np.where(hi > lo, hi - lo, 1.0)
        scaled[:, ~(hi > lo)] = 0.0
        out[valid, : comps.shape[1]] = np.clip(scaled, 0.0, 1.0)
    return out.reshape(h, w, 3), valid.reshape(h, w)


def hatch_nodata(image: np.ndarray, nodata: np.ndarray, period: int = HATCH_PERIOD) -> np.ndarray:
    """Paint the ``nodata`` pixels of an RGB image with the magenta/white diagonal hatch.

    Parameters
    ----------
    image : numpy.ndarray uint8, shape (H, W, 3)
    nodata : numpy.ndarray bool, shape (H, W)
    period : int
        Stripe period in pixels (diagonal stripes, half magenta, half white).

    Returns
    -------
    numpy.ndarray uint8, shape (H, W, 3)
        A copy of ``image`` with the hatch where ``nodata``.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = nodata.shape
    yy, xx = np.mgrid[0:h, 0:w]
    magenta = ((yy + xx) % max(2, int(period))) < max(1, int(period) // 2)
    out[nodata & magenta] = NODATA_RGB
    out[nodata & ~magenta] = (255, 255, 255)
    return out


def pca_rgb(embeddings: np.ndarray, upscale: int = 1) -> np.ndarray:
    """First three principal components of an ``(embedding, y, x)`` array as an RGB image.

    Parameters
    ----------
    embeddings : numpy.ndarray, shape (D, H, W)
        Embedding vectors; NaN marks empty cells.
    upscale : int
        Nearest-neighbour enlargement factor for viewing (the hatch is drawn at the enlarged
        size, so use 4 or more to see its stripes within a cell).

    Returns
    -------
    numpy.ndarray, shape (H * upscale, W * upscale, 3), uint8
        Components 1-3 stretched to 0..255 (see :func:`pca_components`); empty cells carry
        the no-data hatch (:func:`hatch_nodata`).
    """
    comps, valid = pca_components(embeddings)
    img = np.clip(comps * 255.0, 0, 255).round().astype(np.uint8)
    if upscale > 1:
        img = img.repeat(upscale, axis=0).repeat(upscale, axis=1)
        valid = valid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    return hatch_nodata(img, ~valid)
