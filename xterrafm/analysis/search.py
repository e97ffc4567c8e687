"""Search by example: the ``k`` cells of an embedding cube or store most similar to a query.

:func:`top_k` maps the lazy cosine map (:func:`xterrafm.analysis.similarity_map.similarity`) block
by block to each block's best ``k`` cells, then merges those short lists in a tree of
``split_every`` at a time. No task ever holds more than one block of the cube plus ``k`` cells
per merged list, so a store far larger than memory is searched in one pass, with the memory of
a block per dask thread.
"""

from __future__ import annotations

import os
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.analysis.similarity_map import as_embeddings, similarity
from xterrafm.errors import UsageError

with import_gate():
    import dask
    import numpy as np
    import pandas as pd

__all__ = ["block_top_k", "merge_top_k", "top_k"]


def block_top_k(block: np.ndarray, offsets: tuple[int, ...], shape: tuple[int, ...],
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` finite scores of one block and their flat indices in the whole map.

    Parameters
    ----------
    block : ndarray
        Scores of one block (NaN: no cell).
    offsets : tuple of int
        Position of the block's first element in the whole map.
    shape : tuple of int
        Shape of the whole map (for flat indices).
    k : int

    Returns
    -------
    scores : ndarray float32, shape (<= k,)
        Descending; ties in ascending flat index.
    index : ndarray int64, shape (<= k,)
    """
    flat = np.asarray(block, dtype=np.float32).ravel()
    local = np.flatnonzero(np.isfinite(flat))
    if local.size > k:  # a partial sort, then an exact order of the k kept
        keep = np.argpartition(-flat[local], k - 1)[:k]
        local = local[keep]
    coords = np.unravel_index(local, block.shape)
    index = np.ravel_multi_index(tuple(c + o for c, o in zip(coords, offsets, strict=True)),
                                 shape).astype(np.int64)
    return _ordered(flat[local], index, k)


def _ordered(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((index, -scores.astype(np.float64)))[:k]
    return scores[order].astype(np.float32), index[order]


def merge_top_k(parts: list[tuple[np.ndarray, np.ndarray]], k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several :func:`block_top_k` results."""
    scores = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.float32)
    index = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    return _ordered(scores, index, k)


def _top_k_graph(data: Any, k: int, split_every: int) -> Any:
    """A delayed (scores, index) of the best ``k`` cells of a dask score map."""
    blocks = data.to_delayed()
    starts = [np.cumsum((0, *c[:-1])) for c in data.chunks]
    token = dask.base.tokenize(data.name, k)
    parts = []
    for idx in np.ndindex(*blocks.shape):
        offsets = tuple(int(starts[a][i]) for a, i in enumerate(idx))
        parts.append(dask.delayed(block_top_k, pure=True)(
            blocks[idx], offsets, data.shape, k, dask_key_name=("topk-block-" + token, *idx)))
    level = 0
    while len(parts) > 1:
        parts = [dask.delayed(merge_top_k, pure=True)(
            parts[i:i + split_every], k, dask_key_name=(f"topk-merge-{level}-{token}", i))
            for i in range(0, len(parts), split_every)]
        level += 1
    if not parts:
        raise UsageError("the cube is empty")
    return parts[0]


def top_k(emb: Any, k: int = 10, *, x: float | None = None, y: float | None = None,
          time: Any = None, vector: Any = None, group: str | None = None,
          split_every: int = 8) -> pd.DataFrame:
    """The ``k`` cells most similar (cosine) to a query, searched block by block.

    Parameters
    ----------
    emb : DataArray, Dataset or store path
        Embeddings (a store is opened lazily: only one block per task is ever read).
    k : int
        Number of cells returned.
    x, y, time, vector
        The query, as for :func:`xterrafm.analysis.similarity_map.similarity`; a query taken from
        the cube is itself the first hit (score 1).
    group : str, optional
        Group of a multi-CRS store.
    split_every : int
        Lists merged per task of the reduction tree.

    Returns
    -------
    pandas.DataFrame
        One row per hit, best first: ``score`` (cosine in [-1, 1]), ``y``, ``x`` (cell
        centres in the cube's CRS), ``time`` when the cube has dates, and the integer positions
        ``iy``, ``ix`` (``it``). Fewer than ``k`` rows when the cube has fewer non-empty cells.

    Notes
    -----
    One ``compute`` on the active scheduler; ties in score go to the cell that comes first
    in ``(time, y, x)`` order.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"k must be a positive integer; got {k!r}")
    if isinstance(split_every, bool) or int(split_every) < 2:
        raise UsageError(f"split_every must be an integer >= 2; got {split_every!r}")
    if isinstance(emb, (str, os.PathLike)):
        emb = as_embeddings(emb, group=group)
    scores_map = similarity(emb, x=x, y=y, time=time, vector=vector)
    data = scores_map.data
    (scores, index), = dask.compute(_top_k_graph(data, int(k), int(split_every)))
    positions = np.unravel_index(index, data.shape)
    table: dict[str, Any] = {"score": scores}
    for dim, pos in zip(scores_map.dims, positions, strict=True):
        table[dim] = np.asarray(scores_map[dim].values)[pos] if dim in scores_map.coords \
            else pos
    for dim, pos in zip(scores_map.dims, positions, strict=True):
        table["i" + dim.replace("time", "t")] = pos.astype(np.int64)
    frame = pd.DataFrame(table)
    frame.index.name = "rank"
    frame.attrs = dict(scores_map.attrs)
    return frame
