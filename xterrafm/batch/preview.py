"""A PNG preview of an embedding store: its first three principal components as RGB.

The preview reads at most ``max_side`` cells along each axis of the first date (a strided
subsample of large stores), colours them with :func:`xterrafm.pca.pca_rgb` (empty cells
hatched magenta and white, a pattern no data colour can take), and enlarges small grids with
nearest-neighbour resampling so that the image is at least ``min_side`` pixels across.
"""

from __future__ import annotations

import math
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.pca import pca_rgb

with import_gate():
    import numpy as np

__all__ = ["write_preview"]


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
    factor = max(1, math.ceil(min_side / max(arr.shape[1:])))
    image = Image.fromarray(pca_rgb(arr, upscale=factor), mode="RGB")
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png)
    return png
