"""The embedding graph on plain dask arrays: ``embed_dask(pixels, plan) -> embeddings``.

The pixels are re-blocked so that each dask block holds exactly the windows of one output
block (with a halo of ``tile - stride`` pixels when windows overlap), then
:func:`xterrafm.embedding.blocks.embed_block` is mapped over the blocks. The model tasks carry
the plan's resource request as a layer annotation. This module never imports xarray: the
xarray layer (:mod:`xterrafm.embedding.api`) only wraps what it returns.
"""

from __future__ import annotations

import contextlib

from xterrafm._imports import import_gate
from xterrafm.embedding.blocks import embed_block
from xterrafm.embedding.plan import EmbedPlan
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows, BlockSpan

with import_gate():
    import dask
    import dask.array as da
    import numpy as np

__all__ = ["embed_dask", "reblock"]


def _reblock_axis(arr: da.Array, axis: int, spans: list[BlockSpan]) -> da.Array:
    """Blocks along ``axis`` holding exactly pixels ``[pix_start, min(pix_stop, size))`` per span.

    Contiguous non-overlapping spans are a plain rechunk; overlapping ones (``stride < tile``)
    repeat the halo pixels through a concatenation of slices, then a rechunk.
    """
    size = arr.shape[axis]
    bounds = [(s.pix_start, min(s.pix_stop, size)) for s in spans]
    sizes = tuple(b - a for a, b in bounds)
    contiguous = all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    if contiguous and bounds[0][0] == 0 and bounds[-1][1] == size:
        return arr.rechunk({axis: sizes})
    index = [slice(None)] * arr.ndim
    pieces = []
    for a, b in bounds:
        index[axis] = slice(a, b)
        pieces.append(arr[tuple(index)])
    return da.concatenate(pieces, axis=axis).rechunk({axis: sizes})


def _same(block: np.ndarray) -> np.ndarray:
    return block


def reblock(pixels: da.Array, plan: EmbedPlan, salt: str | None = None) -> da.Array:
    """The ``(time, band, y, x)`` pixels as float32 blocks of whole output blocks' windows.

    With ``salt``, every key of the graph built here differs from the keys of the same plan
    without it (see :func:`embed_dask`).
    """
    if salt:
        pixels = pixels.map_blocks(_same, dtype=pixels.dtype,
                                   name=f"xterrafm-{salt}-" + dask.base.tokenize(pixels.name))
    data = pixels if pixels.dtype == np.float32 else pixels.astype(np.float32)
    data = data.rechunk({1: -1})
    data = _reblock_axis(data, 2, plan.y.spans(plan.cells[0]))
    return _reblock_axis(data, 3, plan.x.spans(plan.cells[1]))


def _block_task(block: np.ndarray, *, spec: ModelSpec, y: AxisWindows, x: AxisWindows,
                min_valid: float, block_info: dict | None = None) -> np.ndarray:
    (oy0, oy1), (ox0, ox1) = block_info[None]["array-location"][2:]
    return embed_block(block, spec=spec, y=y, x=x, y_span=y.span(oy0, oy1),
                       x_span=x.span(ox0, ox1), min_valid=min_valid)


def embed_dask(pixels: da.Array, plan: EmbedPlan, *, salt: str | None = None) -> da.Array:
    """Lazy embeddings of a ``(time, band, y, x)`` pixel array.

    Parameters
    ----------
    pixels : dask.array.Array
        Physical units, NaN for no data, bands in the modality's order, on ``plan.geobox``.
    plan : EmbedPlan
        The job (:func:`xterrafm.embedding.plan.make_plan`).
    salt : str, optional
        Makes every key of the graph distinct from the keys of the same plan without it. The
        store writer salts its graph: a user may hold the same embeddings persisted on the
        same cluster, built and optimised differently, and two graphs that share keys with
        different tasks confuse the scheduler ("Detected different run_spec", dask#9888).

    Returns
    -------
    dask.array.Array
        float32 ``(time, embed_dim, n_out_y, n_out_x)``, one block per output block of
        ``plan.cells``; model tasks annotated with ``plan.resources``.
    """
    if pixels.ndim != 4:
        raise ValueError(f"expected (time, band, y, x) pixels; got {pixels.ndim} dimensions")
    blocks = reblock(pixels, plan, salt)
    chunks = (blocks.chunks[0], (plan.embed_dim,), plan.y.out_chunks(plan.cells[0]),
              plan.x.out_chunks(plan.cells[1]))
    token = dask.base.tokenize(blocks.name, plan.spec, plan.y, plan.x, plan.settings.min_valid)
    annotate = (dask.annotate(resources=plan.resources) if plan.resources
                else contextlib.nullcontext())
    with annotate:
        return da.map_blocks(_block_task, blocks, dtype=np.float32, chunks=chunks,
                             meta=np.empty((0, 0, 0, 0), dtype=np.float32),
                             name=f"terrafm-embed-{token}", spec=plan.spec, y=plan.y,
                             x=plan.x, min_valid=plan.settings.min_valid)
