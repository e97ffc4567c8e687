"""Block functions: numpy pixels in, embeddings out, with an explicit model spec.

These functions know nothing about xarray, accessors or dask; the dask graph built in
:mod:`xterrafm.embedding.api` calls :func:`embed_block` on each block.

Masking and NaN handling (the documented fill):

1. Pixels are normalised in physical units with the named spec (NaN stays NaN).
2. A pixel is *valid* when all its bands are finite after normalisation. Padding beyond the
   scene edge is invalid.
3. Invalid pixels are filled with ``0`` in every band — the mean of the normalised data — so
   NaN never reaches the model (:func:`xterrafm.model_input.normalize_and_fill`, the rule
   training and evaluation follow too).
4. A window (tile level) or a 16 x 16 px patch (patch level) whose valid fraction is below
   ``min_valid`` (or zero) gets NaN; windows that would produce only NaN are not run at all.
"""

from __future__ import annotations

from xterrafm._imports import import_gate
from xterrafm.embedding import runtime
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows, BlockSpan
from xterrafm.model_input import normalize_and_fill

with import_gate():
    import numpy as np

__all__ = ["embed_block", "normalize_and_mask", "run_encoder", "valid_fraction"]


def normalize_and_mask(pixels: np.ndarray, modality: str,
                       spec: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Normalise pixels, find the valid ones and fill the others with 0.

    The one rule every path to the model follows:
    :func:`xterrafm.model_input.normalize_and_fill` (this is that function).

    Parameters
    ----------
    pixels : ndarray, shape (..., C, H, W)
        Physical units (S2 reflectance, S1 linear power), NaN where there is no data.
    modality : str
        Modality whose statistics apply.
    spec : str or None
        Normalisation spec name; None leaves values as they are.

    Returns
    -------
    filled : ndarray float32, shape (..., C, H, W)
        Normalised values, 0 in every band of an invalid pixel.
    valid : ndarray bool, shape (..., H, W)
        True where every band is finite after normalisation.
    """
    return normalize_and_fill(pixels, modality, spec)


def valid_fraction(valid: np.ndarray, starts_y: np.ndarray, starts_x: np.ndarray,
                   size: int) -> np.ndarray:
    """Fraction of valid pixels in square boxes, via an integral image.

    Parameters
    ----------
    valid : ndarray bool, shape (T, H, W)
    starts_y, starts_x : ndarray of int
        Top-left corners of the boxes (boxes must lie inside ``valid``).
    size : int
        Box side in pixels.

    Returns
    -------
    ndarray float64, shape (T, len(starts_y), len(starts_x))
    """
    t, h, w = valid.shape
    integral = np.zeros((t, h + 1, w + 1), dtype=np.int64)
    integral[:, 1:, 1:] = valid.cumsum(axis=1).cumsum(axis=2)
    y0, x0 = np.asarray(starts_y)[:, None], np.asarray(starts_x)[None, :]
    y1, x1 = y0 + size, x0 + size
    total = (integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0]
             + integral[:, y0, x0])
    return total / float(size * size)


def run_encoder(model, batch: np.ndarray, modality: str, level: str, device: str) -> np.ndarray:
    """One forward pass.

    Parameters
    ----------
    model : TerraFM
    batch : ndarray float32, shape (B, C, tile, tile)
        Normalised, NaN-free windows.
    modality : str
    level : {"tile", "patch"}
    device : str

    Returns
    -------
    ndarray float32
        ``(B, D)`` CLS embeddings (tile) or ``(B, D, tile/16, tile/16)`` patch tokens (patch).
    """
    with import_gate():
        import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        if level == "tile":
            out = model(x, modality=modality)
        else:
            out = model.forward_features(x, modality=modality)["patch"]
        return out.float().cpu().numpy()


def embed_block(pixels: np.ndarray, *, spec: ModelSpec, y: AxisWindows, x: AxisWindows,
                y_span: BlockSpan, x_span: BlockSpan, min_valid: float = 0.5) -> np.ndarray:
    """Embed the windows of one block.

    Parameters
    ----------
    pixels : ndarray, shape (T, C, h, w)
        Input pixels in physical units, NaN for no data, starting at input pixel
        ``(y_span.pix_start, x_span.pix_start)``; ``h``/``w`` may stop short of
        ``pix_stop`` at the scene edge (the rest is padded).
    spec : ModelSpec
        Model, weights, modality, normalisation, device, precision, batch size.
    y, x : AxisWindows
        Window layouts of the whole scene along rows and columns.
    y_span, x_span : BlockSpan
        The output cells of this block and the windows/pixels they need.
    min_valid : float
        Minimum valid fraction (0..1) of a window (tile level) or patch (patch level).

    Returns
    -------
    ndarray float32, shape (T, D, y_span.out_stop - y_span.out_start, x_span.out_stop - x_span.out_start)
        Embeddings; NaN for masked cells.
    """
    if pixels.ndim != 4:
        raise ValueError(f"expected a (time, band, y, x) block; got shape {pixels.shape}")
    runtime.configure_torch_threads(spec.torch_threads)
    model, device = runtime.get_model(spec)
    dim = int(model.embed_dim)
    level = y.level
    t_len, n_bands = pixels.shape[:2]
    hp = y_span.pix_stop - y_span.pix_start
    wp = x_span.pix_stop - x_span.pix_start
    h, w = min(pixels.shape[2], hp), min(pixels.shape[3], wp)

    filled_raw, valid_raw = normalize_and_mask(pixels[:, :, :h, :w], spec.modality, spec.normalize)
    filled = np.zeros((t_len, n_bands, hp, wp), dtype=np.float32)
    filled[:, :, :h, :w] = filled_raw
    valid = np.zeros((t_len, hp, wp), dtype=bool)
    valid[:, :h, :w] = valid_raw
    del filled_raw, valid_raw

    ny, nx = y_span.out_stop - y_span.out_start, x_span.out_stop - x_span.out_start
    out = np.full((t_len, dim, ny, nx), np.nan, dtype=np.float32)
    win_y = np.arange(y_span.win_start, y_span.win_stop)
    win_x = np.arange(x_span.win_start, x_span.win_stop)
    loc_y = win_y * y.stride - y_span.pix_start  # window starts inside the block
    loc_x = win_x * x.stride - x_span.pix_start

    cells_y = np.arange(y_span.out_start, y_span.out_stop)
    cells_x = np.arange(x_span.out_start, x_span.out_stop)
    own_y, off_y = y.owner(cells_y)
    own_x, off_x = x.owner(cells_x)
    if level == "tile":
        frac = valid_fraction(valid, loc_y, loc_x, y.tile)  # (T, nwy, nwx) == cells
        cell_ok = (frac >= min_valid) & (frac > 0)
        run = cell_ok
    else:
        frac = valid_fraction(valid, cells_y * y.patch - y_span.pix_start,
                              cells_x * x.patch - x_span.pix_start, y.patch)
        cell_ok = (frac >= min_valid) & (frac > 0)  # (T, ny, nx)
        # a window runs when one of the cells it owns in this block is kept
        wy = (own_y[:, None] == win_y[None, :]).astype(np.int64)  # (ny, nwy)
        wx = (own_x[:, None] == win_x[None, :]).astype(np.int64)  # (nx, nwx)
        run = np.einsum("tij,ia,jb->tab", cell_ok.astype(np.int64), wy, wx) > 0

    todo = np.argwhere(run)  # rows: (t, jy, jx)
    batch_size = runtime.resolve_batch_size(spec.batch_size, device)
    tile = y.tile
    # as few batches as batch_size allows, of near-equal sizes: 25 windows run as 7+6+6+6,
    # not 8+8+8+1 (a lone window uses the cores less well than its share of a batch)
    n_batches = -(-len(todo) // batch_size)
    for chunk in np.array_split(todo, n_batches) if n_batches else []:
        batch = np.stack([filled[t, :, loc_y[jy]:loc_y[jy] + tile, loc_x[jx]:loc_x[jx] + tile]
                          for t, jy, jx in chunk])
        result = run_encoder(model, batch, spec.modality, level, device)
        for (t, jy, jx), emb in zip(chunk, result, strict=True):
            if level == "tile":
                out[t, :, jy, jx] = emb
            else:
                rows = np.nonzero(own_y == win_y[jy])[0]
                cols = np.nonzero(own_x == win_x[jx])[0]
                out[t, :, rows[:, None], cols[None, :]] = np.moveaxis(
                    emb[:, off_y[rows][:, None], off_x[cols][None, :]], 0, -1)
        runtime.record(windows=len(chunk), forward_calls=1)
    runtime.record(blocks=1, windows_skipped=int(run.size - len(todo)))
    out[~np.broadcast_to(cell_ok[:, None], out.shape)] = np.nan
    return out
