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
from xterrafm.embedding.blocks import (
    block_windows,
    cells_to_run,
    padded_input,
    place_embeddings,
    window_batch,
)
from xterrafm.embedding.output_check import check_model_output
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
    hp = y_span.pix_stop - y_span.pix_start
    wp = x_span.pix_stop - x_span.pix_start
    bounds = np.cumsum((0, *channels))
    bw = block_windows(y, x, y_span, x_span)
    t_len = pixels.shape[0]
    out = np.full((t_len, int(model.embed_dim), *bw.shape), np.nan, dtype=np.float32)
    filled = {}
    # pattern[t, jy, jx]: bit i set when modality i takes part in that window
    pattern = np.zeros((t_len, len(bw.win_y), len(bw.win_x)), dtype=np.int64)
    cell_ok = np.zeros((t_len, *bw.shape), dtype=bool)
    for i, m in enumerate(modalities):
        filled[m], valid = padded_input(pixels[:, bounds[i]:bounds[i + 1]], m, spec.normalize,
                                        hp, wp)
        ok, run = cells_to_run(valid, bw, min_valid)
        cell_ok |= ok
        pattern |= run.astype(np.int64) << i

    batch_size = runtime.resolve_batch_size(spec.batch_size, device)
    n_run = 0
    for code in np.unique(pattern[pattern > 0]):
        used = [m for i, m in enumerate(modalities) if (int(code) >> i) & 1]
        todo = np.argwhere(pattern == code)
        n_batches = -(-len(todo) // batch_size)
        for chunk in np.array_split(todo, n_batches):
            batch = {m: window_batch(filled[m], chunk, bw) for m in used}
            result = run_fused_encoder(model, batch, y.level, device)
            check_model_output(result, chunk, y=y, x=x, y_span=y_span, x_span=x_span)
            place_embeddings(out, chunk, result, bw)
            runtime.record(windows=len(chunk), forward_calls=1,
                           fused_windows=len(chunk) if len(used) > 1 else 0)
        n_run += len(todo)
    runtime.record(blocks=1, windows_skipped=int(pattern.size - n_run))
    out[~np.broadcast_to(cell_ok[:, None], out.shape)] = np.nan
    return out
