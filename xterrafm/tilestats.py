"""Per-tile statistics with numba: valid-pixel fraction and land-cover class histogram.

Used to skip empty tiles and to weight pretraining samples. A *tile* is a ``tile x tile`` px
square of the grid, tiles start at pixel (0, 0); tiles at the bottom/right edge may be partial
and are measured over their real area. Both statistics work on numpy arrays (numba kernels) and
on dask arrays (the kernels mapped over chunks that must hold whole tiles), keeping any leading
dims such as ``time``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.worldcover import WORLDCOVER_CLASSES

with import_gate():
    import numpy as np
    from numba import njit

__all__ = ["class_histogram", "n_tiles", "valid_fraction"]


def n_tiles(size: int, tile: int) -> int:
    """Number of tiles (the last one possibly partial) along an axis of ``size`` px."""
    return -(-int(size) // int(tile))


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True)
def _valid_map_from_nan(data: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """(band, y, x) floats -> (y, x) bool: True where no band is NaN."""
    nb, ny, nx = data.shape
    valid = np.ones((ny, nx), dtype=np.bool_)
    for b in range(nb):
        for y in range(ny):
            for x in range(nx):
                v = data[b, y, x]
                if v != v:
                    valid[y, x] = False
    return valid


@njit(cache=True)
def _valid_map_from_mask(mask: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """(band, y, x) bool -> (y, x) bool: True where every band is valid."""
    nb, ny, nx = mask.shape
    valid = np.ones((ny, nx), dtype=np.bool_)
    for b in range(nb):
        for y in range(ny):
            for x in range(nx):
                if not mask[b, y, x]:
                    valid[y, x] = False
    return valid


@njit(cache=True)
def _tile_fraction(valid: np.ndarray, tile: int) -> np.ndarray:  # pragma: no cover - numba
    """(y, x) bool -> (tiles_y, tiles_x) float64 fraction of True over each tile's real area."""
    ny, nx = valid.shape
    nty = (ny + tile - 1) // tile
    ntx = (nx + tile - 1) // tile
    counts = np.zeros((nty, ntx), dtype=np.int64)
    for y in range(ny):
        ty = y // tile
        for x in range(nx):
            if valid[y, x]:
                counts[ty, x // tile] += 1
    out = np.empty((nty, ntx), dtype=np.float64)
    for ty in range(nty):
        h = min(tile, ny - ty * tile)
        for tx in range(ntx):
            w = min(tile, nx - tx * tile)
            out[ty, tx] = counts[ty, tx] / (h * w)
    return out


@njit(cache=True)
def _tile_class_counts(
    classes: np.ndarray, tile: int, lut: np.ndarray, n_classes: int
) -> np.ndarray:  # pragma: no cover - numba
    """(y, x) class values -> (tiles_y, tiles_x, n_classes) int64 counts.

    ``lut[v]`` is the histogram bin of value ``v`` (0..255) or -1; NaN and values outside
    0..255 or without a bin are ignored.
    """
    ny, nx = classes.shape
    nty = (ny + tile - 1) // tile
    ntx = (nx + tile - 1) // tile
    out = np.zeros((nty, ntx, n_classes), dtype=np.int64)
    for y in range(ny):
        ty = y // tile
        for x in range(nx):
            v = classes[y, x]
            if v != v:
                continue
            if v < 0 or v > 255:
                continue
            k = lut[int(v)]
            if k >= 0:
                out[ty, x // tile, k] += 1
    return out


# --------------------------------------------------------------------------- block functions


def _valid_fraction_block(block: np.ndarray, tile: int, is_mask: bool, has_band: bool) -> np.ndarray:
    """Numpy block (..., [band,] y, x) -> (..., tiles_y, tiles_x) float64."""
    core = 3 if has_band else 2
    lead = block.shape[:-core]
    flat = block.reshape((-1, *block.shape[-core:]))
    ny, nx = block.shape[-2:]
    out = np.empty((flat.shape[0], n_tiles(ny, tile), n_tiles(nx, tile)), dtype=np.float64)
    for i in range(flat.shape[0]):
        a = flat[i] if has_band else flat[i][None]
        a = np.ascontiguousarray(a)
        valid = _valid_map_from_mask(a) if is_mask else _valid_map_from_nan(a)
        out[i] = _tile_fraction(valid, tile)
    return out.reshape((*lead, *out.shape[1:]))


def _class_histogram_block(block: np.ndarray, tile: int, lut: np.ndarray, n_classes: int
                           ) -> np.ndarray:
    """Numpy block (..., y, x) -> (..., tiles_y, tiles_x, n_classes) int64."""
    lead = block.shape[:-2]
    flat = block.reshape((-1, *block.shape[-2:]))
    ny, nx = block.shape[-2:]
    out = np.empty((flat.shape[0], n_tiles(ny, tile), n_tiles(nx, tile), n_classes),
                   dtype=np.int64)
    for i in range(flat.shape[0]):
        out[i] = _tile_class_counts(np.ascontiguousarray(flat[i]), tile, lut, n_classes)
    return out.reshape((*lead, *out.shape[1:]))


# --------------------------------------------------------------------------- public API


def _check_tile(tile: int) -> int:
    if not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ValueError(f"tile must be a positive integer number of pixels, got {tile!r}")
    return int(tile)


def _unwrap(x: Any) -> Any:
    """The array behind an xarray DataArray (numpy or dask), else ``x`` itself."""
    return x.data if type(x).__module__.startswith("xarray.") and hasattr(x, "dims") else x


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask")


def _aligned_chunks(chunks: Sequence[int], tile: int, axis: str, rechunk: bool) -> tuple | None:
    """Check that every chunk but the last along an axis holds whole tiles.

    Returns None if aligned, else the tile-aligned chunking to use (``rechunk=True``), or
    raises ``ValueError`` naming the axis, chunks and tile.
    """
    if all(c % tile == 0 for c in chunks[:-1]):
        return None
    if not rechunk:
        raise ValueError(
            f"chunks along {axis} {tuple(chunks)} are not multiples of the tile size {tile}; "
            f"rechunk to a multiple of {tile} px or pass rechunk=True"
        )
    size = sum(chunks)
    step = max(tile, int(round(max(chunks) / tile)) * tile)
    return tuple([step] * (size // step) + ([size % step] if size % step else []))


def _prepare_dask(arr: Any, tile: int, rechunk: bool, band_axis: int | None) -> Any:
    new = {}
    for ax, name in ((arr.ndim - 2, "y"), (arr.ndim - 1, "x")):
        fix = _aligned_chunks(arr.chunks[ax], tile, name, rechunk)
        if fix is not None:
            new[ax] = fix
    if band_axis is not None and len(arr.chunks[band_axis]) > 1:
        new[band_axis] = -1  # all bands of a pixel must be seen together
    return arr.rechunk(new) if new else arr


def valid_fraction(data: Any, tile: int = 224, *, rechunk: bool = False) -> Any:
    """Fraction of valid pixels in each tile.

    Parameters
    ----------
    data : numpy.ndarray, dask.array.Array or xarray.DataArray
        Either floats of shape ``(..., band, y, x)`` with NaN as nodata (a pixel is valid when
        no band is NaN), or a boolean validity mask of shape ``(..., y, x)`` (True = valid).
        Leading dims (e.g. ``time``) are kept.
    tile : int
        Tile size in pixels; tiles start at (0, 0), edge tiles may be partial and are measured
        over their real area.
    rechunk : bool
        Dask input whose y/x chunks are not multiples of ``tile``: rechunk it (True) or raise
        ``ValueError`` (False, default).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float64, shape ``(..., ceil(y / tile), ceil(x / tile))``, values in [0, 1]; lazy for
        dask input.
    """
    tile = _check_tile(tile)
    arr = _unwrap(data)
    dtype = np.dtype(arr.dtype)
    is_mask = dtype == np.bool_
    if not is_mask and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"valid_fraction expects float data with NaN nodata or a boolean mask, "
                         f"got dtype {dtype}")
    min_ndim = 2 if is_mask else 3
    if arr.ndim < min_ndim:
        kind = "(..., y, x) mask" if is_mask else "(..., band, y, x) array"
        raise ValueError(f"valid_fraction expects a {kind}; got shape {arr.shape}")
    has_band = not is_mask
    if not _is_dask(arr):
        return _valid_fraction_block(np.asarray(arr), tile, is_mask, has_band)
    arr = _prepare_dask(arr, tile, rechunk, arr.ndim - 3 if has_band else None)
    out_chunks = tuple(arr.chunks[: arr.ndim - (3 if has_band else 2)]) + tuple(
        tuple(n_tiles(c, tile) for c in arr.chunks[ax]) for ax in (arr.ndim - 2, arr.ndim - 1)
    )
    kwargs = {"drop_axis": arr.ndim - 3} if has_band else {}
    return arr.map_blocks(_valid_fraction_block, tile, is_mask, has_band, dtype=np.float64,
                          chunks=out_chunks, **kwargs)


def class_histogram(
    classes: Any,
    tile: int = 224,
    *,
    values: Sequence[int] = tuple(WORLDCOVER_CLASSES),
    rechunk: bool = False,
) -> Any:
    """Per-tile pixel counts of each land-cover class.

    Parameters
    ----------
    classes : numpy.ndarray, dask.array.Array or xarray.DataArray
        Class values of shape ``(..., y, x)``: uint8 (0 = nodata), any integer type, or floats
        with NaN nodata (as readers deliver them). Values not in ``values`` (0, 255, NaN ...)
        are not counted.
    tile : int
        Tile size in pixels (edge tiles partial, as in :func:`valid_fraction`).
    values : sequence of int
        Class values in 1..255 defining the histogram bins, default the ESA WorldCover classes
        (10, 20, ..., 100).
    rechunk : bool
        As in :func:`valid_fraction`.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        int64, shape ``(..., ceil(y / tile), ceil(x / tile), len(values))``; bin ``k`` counts
        value ``values[k]``. Lazy for dask input.
    """
    tile = _check_tile(tile)
    values = [int(v) for v in values]
    if not values or any(not 0 < v < 256 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"values must be distinct class values in 1..255, got {values}")
    lut = np.full(256, -1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    arr = _unwrap(classes)
    dtype = np.dtype(arr.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"class_histogram expects integer or float class values, got dtype {dtype}")
    if arr.ndim < 2:
        raise ValueError(f"class_histogram expects a (..., y, x) array; got shape {arr.shape}")
    n = len(values)
    if not _is_dask(arr):
        return _class_histogram_block(np.asarray(arr), tile, lut, n)
    arr = _prepare_dask(arr, tile, rechunk, None)
    out_chunks = tuple(arr.chunks[:-2]) + tuple(
        tuple(n_tiles(c, tile) for c in arr.chunks[ax]) for ax in (arr.ndim - 2, arr.ndim - 1)
    ) + ((n,),)
    return arr.map_blocks(_class_histogram_block, tile, lut, n, dtype=np.int64,
                          chunks=out_chunks, new_axis=arr.ndim)
