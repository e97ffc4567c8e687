"""Change between dates: a lazy map of the cosine distance between an embedding cube's dates.

``change(emb)`` compares each date with the one before it: ``(time, y, x)`` with one map per
date after the first (coordinate ``time`` the later date, ``time_before`` the earlier);
``change(emb, dates=(a, b))`` compares two named dates: a ``(y, x)`` map. Values are
``1 - cos`` in [0, 2]: 0 where the embeddings are identical, 1 for orthogonal ones; NaN where
either date has no embedding. Nothing is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.analysis.cosine import cosine_along
from xterrafm.analysis.similarity_map import EMBED_DIM, as_embeddings
from xterrafm.errors import UsageError

with import_gate():
    import dask.array as da
    import numpy as np
    import xarray as xr

__all__ = ["change", "cosine_distance"]


def _distance_block(a: np.ndarray, b: np.ndarray, *, axis: int) -> np.ndarray:
    return (np.float32(1.0) - cosine_along(a, b, axis)).astype(np.float32)


def cosine_distance(a: da.Array, b: da.Array, axis: int) -> da.Array:
    """Lazy ``1 - cos`` between the vectors of two equally shaped dask arrays along ``axis``.

    Returns
    -------
    dask.array.Array
        float32 in [0, 2], the inputs' shape without ``axis``.
    """
    a, b = da.asarray(a), da.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    axis = axis % a.ndim
    a = a.rechunk({axis: -1})
    b = b.rechunk(a.chunks)
    return da.map_blocks(_distance_block, a, b, axis=axis, drop_axis=axis, dtype=np.float32,
                         meta=np.empty((0,) * (a.ndim - 1), dtype=np.float32))


def _date(emb: xr.DataArray, when: Any) -> int:
    times = emb["time"].values
    hits = np.flatnonzero(times == np.asarray(when, dtype=times.dtype))
    if hits.size == 0 and np.issubdtype(times.dtype, np.datetime64):
        hits = np.flatnonzero(times.astype("datetime64[D]") == np.datetime64(when, "D"))
    if hits.size != 1:
        raise UsageError(f"{when!r} is not one date of the cube; its dates are "
                         f"{[str(t) for t in times]}")
    return int(hits[0])


def change(emb: Any, *, dates: Sequence[Any] | None = None) -> xr.DataArray:
    """Lazy cosine distance between consecutive dates, or between two named dates.

    Parameters
    ----------
    emb : DataArray, Dataset or store path
        Embeddings with ``time`` and ``embedding`` dimensions.
    dates : (date, date), optional
        Compare these two (earlier, later); default: every date with the one before.

    Returns
    -------
    DataArray
        float32 in [0, 2] named ``change``: ``(time, y, x)`` for consecutive dates (``time``
        the later date, coordinate ``time_before``), ``(y, x)`` for two dates (attrs
        ``time_before``, ``time_after``). 0 where the two embeddings are identical.

    Raises
    ------
    UsageError
        No ``time`` dimension, fewer than two dates, or a date the cube does not have.
    """
    emb = as_embeddings(emb)
    if "time" not in emb.dims:
        raise UsageError("change needs embeddings with a time dimension (two or more dates)")
    data = emb.data if isinstance(emb.data, da.Array) else da.from_array(np.asarray(emb.data))
    tax, eax = emb.dims.index("time"), emb.dims.index(EMBED_DIM)
    keep = {k: v for k, v in emb.coords.items() if EMBED_DIM not in v.dims}
    attrs = {"long_name": "cosine distance between dates (1 - cos)", "units": "1",
             "valid_range": [0.0, 2.0],
             **{k: emb.attrs[k] for k in ("model", "weights_sha256", "modality", "level")
                if k in emb.attrs}}
    if dates is not None:
        if len(dates) != 2:
            raise UsageError(f"dates must be two dates (before, after); got {dates!r}")
        i0, i1 = _date(emb, dates[0]), _date(emb, dates[1])
        a = da.take(data, [i0], axis=tax)
        b = da.take(data, [i1], axis=tax)
        out = da.squeeze(cosine_distance(b, a, eax), axis=tax if tax < eax else tax - 1)
        dims = tuple(d for d in emb.dims if d not in ("time", EMBED_DIM))
        coords = {k: v for k, v in keep.items() if "time" not in v.dims and k != "time"}
        times = emb["time"].values
        attrs.update(time_before=str(times[i0]), time_after=str(times[i1]))
        return xr.DataArray(out, dims=dims, coords=coords, name="change", attrs=attrs)
    n = emb.sizes["time"]
    if n < 2:
        raise UsageError(f"change needs two or more dates; the cube has {n}")
    index = [slice(None)] * data.ndim
    index[tax] = slice(1, None)
    later = data[tuple(index)]
    index[tax] = slice(None, -1)
    earlier = data[tuple(index)]
    out = cosine_distance(later, earlier, eax)
    dims = tuple(d for d in emb.dims if d != EMBED_DIM)
    coords = {k: (v.isel(time=slice(1, None)) if "time" in v.dims else v)
              for k, v in keep.items()}
    coords["time_before"] = ("time", emb["time"].values[:-1])
    return xr.DataArray(out, dims=dims, coords=coords, name="change", attrs=attrs)
