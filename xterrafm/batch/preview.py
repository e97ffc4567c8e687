"""A PNG preview of an embedding store: its first three principal components as RGB.

The preview reads at most ``max_side`` cells along each axis of the first date (a strided
subsample of large stores), fits PCA on the valid cells with numpy's SVD, maps components
1-3 to red, green and blue (each stretched between its 2nd and 98th percentile), paints
empty (NaN) cells black, and enlarges small grids with nearest-neighbour resampling so that
the image is at least ``min_side`` pixels across.
"""

from __future__ import annotations

import math
from pathlib import Path

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["pca_rgb", "write_preview"]


def pca_rgb(embeddings: np.ndarray) -> np.ndarray:
    """First three principal components of an ``(embedding, y, x)`` array as an RGB image.

    Parameters
    ----------
    embeddings : numpy.ndarray, shape (D, H, W)
        Embedding vectors; NaN marks empty cells.

    Returns
    -------
    numpy.ndarray, shape (H, W, 3), uint8
        Components 1-3 stretched to 0..255; empty cells are 0. With fewer than 3 components
        (D < 3 or < 3 valid cells) the missing channels are 0.
    """
    d, h, w = embeddings.shape
    flat = embeddings.reshape(d, h * w).T.astype(np.float64)
    valid = np.isfinite(flat).all(axis=1)
    rgb = np.zeros((h * w, 3), dtype=np.uint8)
    if valid.sum() >= 2:
        x = flat[valid]
        x = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        k = min(3, vt.shape[0])
        comps = x @ vt[:k].T
        for c in range(k):
            lo, hi = np.percentile(comps[:, c], [2, 98])
            scale = (comps[:, c] - lo) / (hi - lo) if hi > lo else np.zeros(len(comps))
            rgb[valid, c] = np.clip(scale * 255.0, 0, 255).astype(np.uint8)
    return rgb.reshape(h, w, 3)


def write_preview(
    store: str | Path, png: str | Path, *, max_side: int = 256, min_side: int = 256
) -> Path:
    """Write the PCA preview of an embedding store (first date) to ``png``.

    Parameters
    ----------
    store : str or Path
        Store (or group path) written by :func:`xterrafm.embedding.embed_to_zarr`.
    png : str or Path
        Output PNG path.
    max_side : int
        Largest number of cells read along y and x (strided subsample beyond).
    min_side : int
        Smallest image side in pixels (nearest-neighbour enlargement).

    Returns
    -------
    Path
        ``png``.
    """
    with import_gate():
        import xarray as xr
        from PIL import Image

    ds = xr.open_zarr(str(store), consolidated=False)
    emb = ds["embeddings"]
    if "time" in emb.dims:
        emb = emb.isel(time=0)
    step = max(1, math.ceil(max(emb.sizes["y"], emb.sizes["x"]) / max_side))
    sub = emb.isel(y=slice(None, None, step), x=slice(None, None, step))
    arr = np.asarray(sub.transpose("embedding", "y", "x").values, dtype=np.float32)
    rgb = pca_rgb(arr)
    image = Image.fromarray(rgb, mode="RGB")
    factor = max(1, math.ceil(min_side / max(rgb.shape[:2])))
    if factor > 1:
        image = image.resize((rgb.shape[1] * factor, rgb.shape[0] * factor), Image.NEAREST)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png)
    return png
