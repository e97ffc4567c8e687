"""Similarity to an example: a lazy cosine map of an embedding cube against one query vector.

``similarity(emb, x=..., y=...[, time=...])`` takes the query from the cube itself (the cell
nearest to the point, in the cube's CRS); ``similarity(emb, vector=v)`` takes any vector of the
cube's width (e.g. the mean of a few labelled cells). The result keeps every dimension of
``emb`` but ``embedding``: a ``(time, y, x)`` (or ``(y, x)``) map of cosines in [-1, 1], 1 at
the query's own cell, NaN where the cube is empty. Nothing is computed: the query stays a
lazy selection when it comes from the cube.

Array core: :func:`cosine_map` on dask arrays (no xarray).
"""

from __future__ import annotations

import os
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.analysis.cosine import cosine_along
from xterrafm.errors import InputError, UsageError

with import_gate():
    import dask.array as da
    import numpy as np
    import xarray as xr

__all__ = ["EMBED_DIM", "as_embeddings", "cosine_map", "query_vector", "similarity"]

#: Name of the embedding dimension.
EMBED_DIM = "embedding"


def _cosine_block(block: np.ndarray, query: np.ndarray, *, axis: int) -> np.ndarray:
    shape = [1] * block.ndim
    shape[axis] = -1
    return cosine_along(block, np.asarray(query).reshape(shape), axis)


def cosine_map(data: da.Array, query: Any, axis: int) -> da.Array:
    """Lazy cosines between the vectors of ``data`` along ``axis`` and one query vector.

    Parameters
    ----------
    data : dask.array.Array
        Embeddings, vectors along ``axis`` (re-chunked to one chunk along it if needed).
    query : array-like or dask.array.Array, shape (D,)
        The query; a dask array stays lazy.
    axis : int
        The embedding axis of ``data``.

    Returns
    -------
    dask.array.Array
        float32, ``data``'s shape without ``axis``, one block per block of ``data``.
    """
    data = da.asarray(data)
    axis = axis % data.ndim
    if data.numblocks[axis] != 1:
        data = data.rechunk({axis: -1})
    q = da.asarray(query).rechunk(-1)
    if q.ndim != 1 or q.shape[0] != data.shape[axis]:
        raise InputError(f"the query has shape {q.shape}; the embeddings have "
                         f"{data.shape[axis]} components")
    index = tuple(range(data.ndim))
    out_index = tuple(i for i in index if i != axis)
    return da.blockwise(_cosine_block, out_index, data, index, q, (axis,), axis=axis,
                        dtype=np.float32, concatenate=True,
                        meta=np.empty((0,) * len(out_index), dtype=np.float32))


def as_embeddings(obj: Any, *, group: str | None = None) -> xr.DataArray:
    """An embedding cube from a DataArray, a Dataset of a store, or a store path.

    Parameters
    ----------
    obj : DataArray, Dataset, str or path
        Embeddings with an ``embedding`` dimension; a Dataset with an ``embeddings`` variable;
        or the path/URL of a store written by :func:`xterrafm.embed_to_zarr` (opened lazily).
    group : str, optional
        Group of a multi-CRS store (``"EPSG_32632"``).

    Raises
    ------
    InputError
        No ``embedding`` dimension.
    """
    if isinstance(obj, (str, os.PathLike)):
        obj = xr.open_zarr(str(obj), group=group, decode_coords="all")
    if isinstance(obj, xr.Dataset):
        if "embeddings" not in obj:
            raise InputError(f"the Dataset has no 'embeddings' variable; it has "
                             f"{list(obj.data_vars)}")
        obj = obj["embeddings"]
    if not isinstance(obj, xr.DataArray) or EMBED_DIM not in obj.dims:
        dims = getattr(obj, "dims", None)
        raise InputError(f"expected embeddings with an {EMBED_DIM!r} dimension (what "
                         f"xterrafm.embed returns); got {type(obj).__name__} with dims {dims}")
    return obj


def _nearest(index: Any, value: float, name: str) -> int:
    """Position of the coordinate nearest ``value``, refused beyond half a cell outside."""
    coords = np.asarray(index, dtype=np.float64)
    step = float(np.abs(np.diff(coords)).min()) if coords.size > 1 else np.inf
    pos = int(np.abs(coords - float(value)).argmin())
    if abs(coords[pos] - float(value)) > step / 2 + 1e-9 * max(1.0, abs(float(value))):
        raise UsageError(f"{name}={value} lies outside the cube ({name} from {coords.min()} to "
                         f"{coords.max()}, cells {step:g} apart, in the cube's CRS)")
    return pos


def _time_position(emb: xr.DataArray, time: Any) -> int | None:
    if "time" not in emb.dims:
        return None
    times = emb["time"].values
    if time is None:
        if emb.sizes["time"] != 1:
            raise UsageError(f"the cube has {emb.sizes['time']} dates; pass time= (one of "
                             f"{[str(t)[:10] for t in times]}) to say which holds the query")
        return 0
    hits = np.flatnonzero(times == np.asarray(time, dtype=times.dtype))
    if hits.size == 0 and np.issubdtype(times.dtype, np.datetime64):  # a day names its date
        hits = np.flatnonzero(times.astype("datetime64[D]") == np.datetime64(time, "D"))
    if hits.size != 1:
        raise UsageError(f"time={time!r} is not one date of the cube; its dates are "
                         f"{[str(t) for t in times]}")
    return int(hits[0])


def query_vector(emb: xr.DataArray, *, x: float | None = None, y: float | None = None,
                 time: Any = None, vector: Any = None) -> tuple[Any, dict[str, Any]]:
    """The query of :func:`similarity`: a vector, or the cell of ``emb`` nearest to (x, y).

    Returns
    -------
    query : numpy or dask array, shape (D,)
        Lazy (a selection of ``emb``) when taken from the cube.
    where : dict
        ``{"x": .., "y": .., "time": ..}`` of the query cell (cell-centre coordinates), or
        ``{}`` for a given vector.

    Raises
    ------
    UsageError
        Both or neither of ``vector`` and (``x``, ``y``); a point outside the cube; a missing
        or unknown ``time``.
    """
    emb = as_embeddings(emb)
    if vector is not None:
        if x is not None or y is not None or time is not None:
            raise UsageError("pass either vector= or x=, y= (and time=), not both")
        q = vector.data if isinstance(vector, xr.DataArray) else vector
        if not isinstance(q, da.Array):
            q = np.asarray(q, dtype=np.float32)
        if q.ndim != 1 or q.shape[0] != emb.sizes[EMBED_DIM]:
            raise InputError(f"vector has shape {q.shape}; the embeddings have "
                             f"{emb.sizes[EMBED_DIM]} components")
        return q, {}
    if x is None or y is None:
        raise UsageError("pass x= and y= (a point in the cube's CRS) or vector=")
    iy, ix = _nearest(emb["y"].values, y, "y"), _nearest(emb["x"].values, x, "x")
    sel: dict[str, int] = {"y": iy, "x": ix}
    it = _time_position(emb, time)
    if it is not None:
        sel["time"] = it
    cell = emb.isel(sel)
    where = {"x": float(emb["x"].values[ix]), "y": float(emb["y"].values[iy])}
    if it is not None:
        where["time"] = str(emb["time"].values[it])
    data = cell.data if isinstance(cell.data, da.Array) else np.asarray(cell.values)
    return data, where


def similarity(emb: Any, *, x: float | None = None, y: float | None = None, time: Any = None,
               vector: Any = None) -> xr.DataArray:
    """Lazy cosine similarity of every cell of an embedding cube to a query.

    Parameters
    ----------
    emb : DataArray, Dataset or store path
        Embeddings with an ``embedding`` dimension (see :func:`as_embeddings`).
    x, y : float, optional
        A point in the cube's CRS: the query is the cell nearest to it.
    time : date, optional
        The date of the query cell (needed when the cube has several dates).
    vector : array-like, shape (D,), optional
        The query itself, instead of a point.

    Returns
    -------
    DataArray
        float32 in [-1, 1], dims of ``emb`` without ``embedding`` (coordinates kept), 1 at the
        query cell, NaN where the cube has no embedding; named ``similarity``; attrs name the
        query point and the model.
    """
    emb = as_embeddings(emb)
    query, where = query_vector(emb, x=x, y=y, time=time, vector=vector)
    data = emb.data if isinstance(emb.data, da.Array) else da.from_array(np.asarray(emb.data))
    axis = emb.dims.index(EMBED_DIM)
    out = cosine_map(data, query, axis)
    dims = tuple(d for d in emb.dims if d != EMBED_DIM)
    coords = {k: v for k, v in emb.coords.items() if EMBED_DIM not in v.dims}
    attrs = {"long_name": "cosine similarity to the query", "units": "1",
             "valid_range": [-1.0, 1.0],
             **{f"query_{k}": v for k, v in where.items()},
             **{k: emb.attrs[k] for k in ("model", "weights_sha256", "modality", "level")
                if k in emb.attrs}}
    return xr.DataArray(out, dims=dims, coords=coords, name="similarity", attrs=attrs)
