"""Block function of fused embeddings: stacked numpy pixels of several modalities in, one
embedding per window (or patch) out, through TerraFM's cross-attention fusion.

Each modality is normalised and masked on its own, as for single-modality embeddings
(:func:`xterrafm.embedding.blocks.normalize_and_mask`: invalid pixels filled with 0). Then:

* **tile level**: a modality *takes part* in a window when its valid fraction there is at least
  ``min_valid`` (and above 0). A window is run with the modalities that take part — fused when
  there are several, through that modality's own stem when only one does (exactly the
  single-modality embedding) — and is NaN when none does.
* **patch level**: a modality takes part in a window when one of the patches the window owns
  in this block is valid enough for it; a patch is NaN when no modality is valid enough there.

So a cloudy optical window falls back to radar and a radar gap falls back to optics.
"""

from __future__ import annotations

from collections.abc import Mapping

from xterrafm._imports import import_gate
from xterrafm.embedding import runtime
from xterrafm.embedding.blocks import normalize_and_mask, valid_fraction
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows, BlockSpan

with import_gate():
    import numpy as np

__all__ = ["embed_fused_block", "run_fused_encoder"]


def run_fused_encoder(model, inputs: Mapping[str, np.ndarray], level: str,
                      device: str) -> np.ndarray:
    """One forward pass over windows of one or more modalities.

    Parameters
    ----------
    model : TerraFM
    inputs : mapping of str to ndarray float32, each (B, C_m, tile, tile)
        Normalised, NaN-free windows of each modality taking part (same B and size).
    level : {"tile", "patch"}
    device : str

    Returns
    -------
    ndarray float32
        ``(B, D)`` (tile) or ``(B, D, tile/16, tile/16)`` (patch). With one modality this is
        the single-modality forward pass (its own stem); with several, ``forward_fused``.
    """
    with import_gate():
        import torch

    with torch.inference_mode():
        xs = {m: torch.from_numpy(np.ascontiguousarray(b)).to(device) for m, b in inputs.items()}
        if len(xs) == 1:
            (m, x), = xs.items()
            out = model(x, modality=m) if level == "tile" else \
                model.forward_features(x, modality=m)["patch"]
        elif level == "tile":
            out = model.forward_fused(xs)
        else:
            out = model.forward_fused_features(xs)["patch"]
        return out.float().cpu().numpy()


def _padded(pixels: np.ndarray, modality: str, spec: ModelSpec, hp: int, wp: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised, filled pixels and validity of one modality, padded to (hp, wp)."""
    t_len, n_bands = pixels.shape[:2]
    h, w = min(pixels.shape[2], hp), min(pixels.shape[3], wp)
    filled_raw, valid_raw = normalize_and_mask(pixels[:, :, :h, :w], modality, spec.normalize)
    filled = np.zeros((t_len, n_bands, hp, wp), dtype=np.float32)
    filled[:, :, :h, :w] = filled_raw
    valid = np.zeros((t_len, hp, wp), dtype=bool)
    valid[:, :h, :w] = valid_raw
    return filled, valid


def embed_fused_block(pixels: np.ndarray, *, spec: ModelSpec, modalities: tuple[str, ...],
                      channels: tuple[int, ...], y: AxisWindows, x: AxisWindows,
                      y_span: BlockSpan, x_span: BlockSpan,
                      min_valid: float = 0.5) -> np.ndarray:
    """Embed the windows of one block of stacked modalities.

    Parameters
    ----------
    pixels : ndarray, shape (T, sum(channels), h, w)
        The modalities' bands stacked in ``modalities`` order, physical units, NaN for no data,
        starting at input pixel ``(y_span.pix_start, x_span.pix_start)`` (as for
        :func:`xterrafm.embedding.blocks.embed_block`).
    spec : ModelSpec
        Model, weights, normalisation, device, precision, batch size (``spec.modality`` is the
        anchor modality).
    modalities : tuple of str
    channels : tuple of int
        Bands of each modality in the stack.
    y, x, y_span, x_span, min_valid
        As for :func:`~xterrafm.embedding.blocks.embed_block`.

    Returns
    -------
    ndarray float32, shape (T, D, ny, nx)
        Embeddings; NaN for cells where no modality is valid enough.
    """
    if pixels.ndim != 4 or pixels.shape[1] != sum(channels):
        raise ValueError(f"expected a (time, {sum(channels)}, y, x) block of stacked "
                         f"{modalities}; got shape {pixels.shape}")
    runtime.configure_torch_threads(spec.torch_threads)
    model, device = runtime.get_model(spec)
    for m in modalities:
        model.prepare(m)  # cached after the first block of the process
    dim = int(model.embed_dim)
    level = y.level
    t_len = pixels.shape[0]
    hp = y_span.pix_stop - y_span.pix_start
    wp = x_span.pix_stop - x_span.pix_start
    bounds = np.cumsum((0, *channels))
    filled, valid = {}, {}
    for i, m in enumerate(modalities):
        filled[m], valid[m] = _padded(pixels[:, bounds[i]:bounds[i + 1]], m, spec, hp, wp)

    ny, nx = y_span.out_stop - y_span.out_start, x_span.out_stop - x_span.out_start
    out = np.full((t_len, dim, ny, nx), np.nan, dtype=np.float32)
    win_y = np.arange(y_span.win_start, y_span.win_stop)
    win_x = np.arange(x_span.win_start, x_span.win_stop)
    loc_y = win_y * y.stride - y_span.pix_start
    loc_x = win_x * x.stride - x_span.pix_start
    cells_y = np.arange(y_span.out_start, y_span.out_stop)
    cells_x = np.arange(x_span.out_start, x_span.out_stop)
    own_y, off_y = y.owner(cells_y)
    own_x, off_x = x.owner(cells_x)
    wy = (own_y[:, None] == win_y[None, :]).astype(np.int64)  # (ny, nwy)
    wx = (own_x[:, None] == win_x[None, :]).astype(np.int64)  # (nx, nwx)

    # pattern[t, jy, jx]: bit i set when modality i takes part in that window
    pattern = np.zeros((t_len, len(win_y), len(win_x)), dtype=np.int64)
    cell_ok = np.zeros((t_len, ny, nx), dtype=bool)
    for i, m in enumerate(modalities):
        if level == "tile":
            frac = valid_fraction(valid[m], loc_y, loc_x, y.tile)
            ok = (frac >= min_valid) & (frac > 0)
            run = ok
        else:
            frac = valid_fraction(valid[m], cells_y * y.patch - y_span.pix_start,
                                  cells_x * x.patch - x_span.pix_start, y.patch)
            ok = (frac >= min_valid) & (frac > 0)
            run = np.einsum("tij,ia,jb->tab", ok.astype(np.int64), wy, wx) > 0
        cell_ok |= ok
        pattern |= run.astype(np.int64) << i

    batch_size = runtime.resolve_batch_size(spec.batch_size, device)
    tile = y.tile
    n_run = 0
    for code in np.unique(pattern[pattern > 0]):
        used = [m for i, m in enumerate(modalities) if (int(code) >> i) & 1]
        todo = np.argwhere(pattern == code)
        n_batches = -(-len(todo) // batch_size)
        for chunk in np.array_split(todo, n_batches):
            batch = {m: np.stack([filled[m][t, :, loc_y[jy]:loc_y[jy] + tile,
                                            loc_x[jx]:loc_x[jx] + tile]
                                  for t, jy, jx in chunk]) for m in used}
            result = run_fused_encoder(model, batch, level, device)
            for (t, jy, jx), emb in zip(chunk, result, strict=True):
                if level == "tile":
                    out[t, :, jy, jx] = emb
                else:
                    rows = np.nonzero(own_y == win_y[jy])[0]
                    cols = np.nonzero(own_x == win_x[jx])[0]
                    out[t, :, rows[:, None], cols[None, :]] = np.moveaxis(
                        emb[:, off_y[rows][:, None], off_x[cols][None, :]], 0, -1)
            runtime.record(windows=len(chunk), forward_calls=1,
                           fused_windows=len(chunk) if len(used) > 1 else 0)
        n_run += len(todo)
    runtime.record(blocks=1, windows_skipped=int(pattern.size - n_run))
    out[~np.broadcast_to(cell_ok[:, None], out.shape)] = np.nan
    return out
