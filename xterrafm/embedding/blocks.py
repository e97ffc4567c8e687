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

from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.embedding import runtime
from xterrafm.embedding.output_check import check_model_output
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows, BlockSpan
from xterrafm.model_input import normalize_and_fill

with import_gate():
    import numpy as np

__all__ = ["BlockWindows", "block_windows", "box_valid_fraction", "cells_to_run", "embed_block",
           "normalize_and_mask", "padded_input", "place_embeddings", "run_encoder",
           "window_batch"]


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


def box_valid_fraction(valid: np.ndarray, starts_y: np.ndarray, starts_x: np.ndarray,
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


def padded_input(pixels: np.ndarray, modality: str, normalize: str | None, hp: int, wp: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised, filled pixels of one modality and their validity, padded to ``(hp, wp)``.

    Parameters
    ----------
    pixels : ndarray, shape (T, C, h, w)
        Physical units, NaN for no data; ``h``/``w`` may be short of ``hp``/``wp`` (scene
        edge) or longer (only the first ``hp``/``wp`` are used).
    modality, normalize
        As for :func:`normalize_and_mask`.
    hp, wp : int
        Pixel rows and columns the block's windows need.

    Returns
    -------
    filled : ndarray float32, shape (T, C, hp, wp)
        0 in every band of invalid and padded pixels.
    valid : ndarray bool, shape (T, hp, wp)
    """
    t_len, n_bands = pixels.shape[:2]
    h, w = min(pixels.shape[2], hp), min(pixels.shape[3], wp)
    filled_raw, valid_raw = normalize_and_mask(pixels[:, :, :h, :w], modality, normalize)
    filled = np.zeros((t_len, n_bands, hp, wp), dtype=np.float32)
    filled[:, :, :h, :w] = filled_raw
    valid = np.zeros((t_len, hp, wp), dtype=bool)
    valid[:, :h, :w] = valid_raw
    return filled, valid


@dataclass(frozen=True)
class BlockWindows:
    """Where the windows and output cells of one block lie.

    Attributes
    ----------
    level : {"tile", "patch"}
    tile, patch : int
        Window and patch side (px).
    win_y, win_x : ndarray of int
        Scene indices of the windows the block runs.
    loc_y, loc_x : ndarray of int
        Their top-left pixels inside the block.
    cell_y, cell_x : ndarray of int
        Top-left pixels, inside the block, of the output cells' patches (patch level).
    own_y, own_x, off_y, off_x : ndarray of int
        For each output cell of the block: the window that owns it and its patch offset in
        that window's token grid (:meth:`AxisWindows.owner`).
    wy, wx : ndarray int64, shape (cells, windows)
        1 where a window owns a cell.
    """

    level: str
    tile: int
    patch: int
    win_y: np.ndarray
    win_x: np.ndarray
    loc_y: np.ndarray
    loc_x: np.ndarray
    cell_y: np.ndarray
    cell_x: np.ndarray
    own_y: np.ndarray
    own_x: np.ndarray
    off_y: np.ndarray
    off_x: np.ndarray
    wy: np.ndarray
    wx: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """Output cells ``(ny, nx)`` of the block."""
        return len(self.own_y), len(self.own_x)


def block_windows(y: AxisWindows, x: AxisWindows, y_span: BlockSpan,
                  x_span: BlockSpan) -> BlockWindows:
    """The :class:`BlockWindows` of a block from the scene's window layouts and its spans."""
    win_y = np.arange(y_span.win_start, y_span.win_stop)
    win_x = np.arange(x_span.win_start, x_span.win_stop)
    cells_y = np.arange(y_span.out_start, y_span.out_stop)
    cells_x = np.arange(x_span.out_start, x_span.out_stop)
    own_y, off_y = y.owner(cells_y)
    own_x, off_x = x.owner(cells_x)
    return BlockWindows(
        level=y.level, tile=y.tile, patch=y.patch, win_y=win_y, win_x=win_x,
        loc_y=win_y * y.stride - y_span.pix_start, loc_x=win_x * x.stride - x_span.pix_start,
        cell_y=cells_y * y.patch - y_span.pix_start, cell_x=cells_x * x.patch - x_span.pix_start,
        own_y=own_y, own_x=own_x, off_y=off_y, off_x=off_x,
        wy=(own_y[:, None] == win_y[None, :]).astype(np.int64),
        wx=(own_x[:, None] == win_x[None, :]).astype(np.int64))


def cells_to_run(valid: np.ndarray, bw: BlockWindows, min_valid: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Which output cells are kept and which windows must run.

    Parameters
    ----------
    valid : ndarray bool, shape (T, hp, wp)
    bw : BlockWindows
    min_valid : float
        Minimum valid fraction (0..1) of a window (tile level) or patch (patch level).

    Returns
    -------
    cell_ok : ndarray bool, shape (T, ny, nx)
    run : ndarray bool, shape (T, len(win_y), len(win_x))
        A window runs when one of the cells it owns in this block is kept.
    """
    if bw.level == "tile":
        frac = box_valid_fraction(valid, bw.loc_y, bw.loc_x, bw.tile)  # cells == windows
        cell_ok = (frac >= min_valid) & (frac > 0)
        return cell_ok, cell_ok
    frac = box_valid_fraction(valid, bw.cell_y, bw.cell_x, bw.patch)
    cell_ok = (frac >= min_valid) & (frac > 0)
    run = np.einsum("tij,ia,jb->tab", cell_ok.astype(np.int64), bw.wy, bw.wx) > 0
    return cell_ok, run


def window_batch(filled: np.ndarray, chunk: np.ndarray, bw: BlockWindows) -> np.ndarray:
    """The ``(B, C, tile, tile)`` windows of ``chunk`` rows ``(t, jy, jx)`` from filled pixels."""
    tile = bw.tile
    return np.stack([filled[t, :, bw.loc_y[jy]:bw.loc_y[jy] + tile,
                            bw.loc_x[jx]:bw.loc_x[jx] + tile] for t, jy, jx in chunk])


def place_embeddings(out: np.ndarray, chunk: np.ndarray, result: np.ndarray,
                     bw: BlockWindows) -> None:
    """Write a batch's embeddings into the block's ``(T, D, ny, nx)`` output.

    ``chunk`` holds the batch's ``(t, jy, jx)`` rows; ``result`` is ``(B, D)`` (tile level) or
    ``(B, D, tile/patch, tile/patch)`` (patch level: each cell takes its owner's token).
    """
    for (t, jy, jx), emb in zip(chunk, result, strict=True):
        if bw.level == "tile":
            out[t, :, jy, jx] = emb
        else:
            rows = np.nonzero(bw.own_y == bw.win_y[jy])[0]
            cols = np.nonzero(bw.own_x == bw.win_x[jx])[0]
            out[t, :, rows[:, None], cols[None, :]] = np.moveaxis(
                emb[:, bw.off_y[rows][:, None], bw.off_x[cols][None, :]], 0, -1)


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
    hp = y_span.pix_stop - y_span.pix_start
    wp = x_span.pix_stop - x_span.pix_start
    filled, valid = padded_input(pixels, spec.modality, spec.normalize, hp, wp)
    bw = block_windows(y, x, y_span, x_span)
    out = np.full((pixels.shape[0], int(model.embed_dim), *bw.shape), np.nan, dtype=np.float32)
    cell_ok, run = cells_to_run(valid, bw, min_valid)
    del valid

    todo = np.argwhere(run)  # rows: (t, jy, jx)
    batch_size = runtime.resolve_batch_size(spec.batch_size, device)
    # as few batches as batch_size allows, of near-equal sizes: 25 windows run as 7+6+6+6,
    # not 8+8+8+1 (a lone window uses the cores less well than its share of a batch)
    n_batches = -(-len(todo) // batch_size)
    for chunk in np.array_split(todo, n_batches) if n_batches else []:
        result = run_encoder(model, window_batch(filled, chunk, bw), spec.modality, y.level,
                             device)
        check_model_output(result, chunk, y=y, x=x, y_span=y_span, x_span=x_span)
        place_embeddings(out, chunk, result, bw)
        runtime.record(windows=len(chunk), forward_calls=1)
    runtime.record(blocks=1, windows_skipped=int(run.size - len(todo)))
    out[~np.broadcast_to(cell_ok[:, None], out.shape)] = np.nan
    return out
