"""Fast reads of coarse bands onto a finer, axis-aligned grid (the 20 m / 60 m Sentinel-2 case).

odc-loader reads every band whose grid differs from the output grid through GDAL's warper
(:func:`rasterio.warp.reproject`). For the common Sentinel-2 case — a 20 m or 60 m band in the
same CRS as the 10 m output grid, pixel axes parallel — warping is far more work than needed: on
a 2-core machine it cost about four times the decoding of all twelve bands. Here such a band is
read at its native resolution (only the window the output needs, plus one pixel of margin) and
interpolated with a small numba kernel that computes what GDAL's warper computes:

* ``bilinear``: output pixel centres mapped to source pixel coordinates; an output pixel whose
  centre falls in a source nodata pixel becomes the output nodata; otherwise the four nearest
  source pixel centres are weighted by distance, source nodata pixels (and taps beyond the
  raster edge) drop out of the kernel and the remaining weights are renormalised;
* ``nearest``: the source pixel that contains the output pixel centre.

:func:`read_axis_aligned` returns None when the fast path does not apply (different CRS,
rotated grids, downsampling, several bands, integer outputs, other resampling methods); callers
then fall back to odc-loader's reader.
"""

from __future__ import annotations

import math
from typing import Any

from xterrafm import _compat
from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    import rasterio
    from numba import njit

__all__ = [
    "axis_map",
    "read_axis_aligned",
    "read_source_fast",
    "resample_axis_aligned",
    "warm_up",
]

#: Resampling methods the fast path implements.
METHODS = ("bilinear", "nearest")

# Tolerance on the affine terms (in output pixels) when deciding that two grids are
# axis-aligned with the same orientation.
_TOL = 1e-9


def axis_map(n_dst: int, scale: float, offset: float) -> np.ndarray:
    """Source pixel coordinate of each output pixel centre along one axis.

    Parameters
    ----------
    n_dst : int
        Output pixels along the axis.
    scale : float
        Source pixels per output pixel (``< 1`` when upsampling).
    offset : float
        Source pixel coordinate of the output grid's first pixel edge.

    Returns
    -------
    ndarray float64, shape (n_dst,)
        Continuous source coordinates (pixel edges at integers, centres at ``i + 0.5``).
    """
    return offset + scale * (np.arange(n_dst, dtype=np.float64) + 0.5)


@njit(cache=True, nogil=True)
def _bilinear_kernel(src, has_nodata, nodata, ya, yb, wya, wyb, yc, xa, xb, wxa, wxb, xc, out,
                     fill):  # pragma: no cover  (numba-compiled: coverage does not see inside)
    for r in range(out.shape[0]):
        r0, r1, u0, u1 = ya[r], yb[r], wya[r], wyb[r]
        for c in range(out.shape[1]):
            c0, c1, v0, v1 = xa[c], xb[c], wxa[c], wxb[c]
            centre = float(src[yc[r], xc[c]])
            if centre != centre or (has_nodata and centre == nodata):
                out[r, c] = fill  # GDAL skips output pixels whose centre falls on nodata
                continue
            p00 = float(src[r0, c0])
            p01 = float(src[r0, c1])
            p10 = float(src[r1, c0])
            p11 = float(src[r1, c1])
            w00, w01, w10, w11 = u0 * v0, u0 * v1, u1 * v0, u1 * v1
            # a tap is valid unless NaN or nodata; invalid taps leave the kernel
            if p00 != p00 or (has_nodata and p00 == nodata):
                w00, p00 = 0.0, 0.0
            if p01 != p01 or (has_nodata and p01 == nodata):
                w01, p01 = 0.0, 0.0
            if p10 != p10 or (has_nodata and p10 == nodata):
                w10, p10 = 0.0, 0.0
            if p11 != p11 or (has_nodata and p11 == nodata):
                w11, p11 = 0.0, 0.0
            wsum = w00 + w01 + w10 + w11
            if wsum > 1e-10:
                out[r, c] = (w00 * p00 + w01 * p01 + w10 * p10 + w11 * p11) / wsum
            else:
                out[r, c] = fill


def _taps(u: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Two bilinear taps, their weights and the containing pixel per coordinate along one axis.

    ``u`` are source pixel coordinates (:func:`axis_map`); taps and weights are measured
    between pixel centres. A tap beyond the raster edge gets weight 0 (and a valid index),
    which renormalisation turns into the edge pixel's value, as GDAL's warper does.
    """
    v = u - 0.5
    i0 = np.floor(v)
    frac = v - i0
    i0 = i0.astype(np.int64)
    i1 = i0 + 1
    w0, w1 = 1.0 - frac, frac.copy()
    w0[(i0 < 0) | (i0 >= n)] = 0.0
    w1[(i1 < 0) | (i1 >= n)] = 0.0
    centre = np.clip(np.floor(u).astype(np.int64), 0, n - 1)
    return np.clip(i0, 0, n - 1), np.clip(i1, 0, n - 1), w0, w1, centre


@njit(cache=True, nogil=True)
def _nearest_kernel(src, has_nodata, nodata, yi, xi, out, fill):  # pragma: no cover
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            v = float(src[yi[r], xi[c]])
            if v != v or (has_nodata and v == nodata):
                out[r, c] = fill
            else:
                out[r, c] = v


def resample_axis_aligned(src: np.ndarray, ys: np.ndarray, xs: np.ndarray, method: str,
                          out: np.ndarray, *, nodata: float | None = None,
                          fill: float = math.nan) -> np.ndarray:
    """Interpolate a 2-D source at given source pixel coordinates (separable grid).

    Parameters
    ----------
    src : ndarray, shape (h, w)
        Source pixels (any real dtype); pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``.
    ys, xs : ndarray float64
        Source coordinates of the output rows and columns (see :func:`axis_map`), relative to
        ``src``'s first pixel edge.
    method : {"bilinear", "nearest"}
    out : ndarray float, shape (len(ys), len(xs))
        Written in place and returned.
    nodata : float, optional
        Source value that marks missing pixels (NaN is always missing).
    fill : float
        Output value where nothing valid contributes.

    Returns
    -------
    ndarray
        ``out``.
    """
    has_nodata = nodata is not None and not math.isnan(nodata)
    nd = float(nodata) if has_nodata else 0.0
    if method == "bilinear":
        ya, yb, wya, wyb, yc = _taps(ys, src.shape[0])
        xa, xb, wxa, wxb, xc = _taps(xs, src.shape[1])
        _bilinear_kernel(src, has_nodata, nd, ya, yb, wya, wyb, yc, xa, xb, wxa, wxb, xc, out,
                         fill)
    elif method == "nearest":
        yi = np.clip(np.floor(ys).astype(np.int64), 0, src.shape[0] - 1)
        xi = np.clip(np.floor(xs).astype(np.int64), 0, src.shape[1] - 1)
        _nearest_kernel(src, has_nodata, nd, yi, xi, out, fill)
    else:
        raise ValueError(f"resampling {method!r} is not one of {METHODS}")
    return out


def _relation(src_transform: Any, dst_transform: Any) -> tuple[float, float, float, float] | None:
    """``(sy, oy, sx, ox)``: source pixel coordinates ``x_src = ox + sx * x_dst`` (same for y)
    when both grids are axis-aligned with the same orientation and the source is coarser along
    at least one axis (and not finer along the other); None otherwise — for the same
    resolution odc-loader pastes, or warps sub-pixel shifts, itself."""
    rel = ~src_transform * dst_transform  # output pixel coords -> source pixel coords
    if abs(rel.b) > _TOL or abs(rel.d) > _TOL:
        return None
    sx, sy = rel.a, rel.e
    if not (0 < sx <= 1 + _TOL and 0 < sy <= 1 + _TOL):
        return None
    if abs(sx - 1) < _TOL and abs(sy - 1) < _TOL:
        return None
    return sy, rel.f, sx, rel.c


def read_axis_aligned(rdr: Any, bidx: Any, dst_geobox: Any, method: str, dst_dtype: np.dtype,
                      src_nodata: float | None, dst_nodata: float | None,
                      dst: np.ndarray | None = None) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Read one band of an open raster onto ``dst_geobox`` without GDAL's warper, if possible.

    Parameters
    ----------
    rdr : rasterio.DatasetReader
        The open source.
    bidx : int
        1-based band index (anything else: not handled, returns None).
    dst_geobox : odc.geo.geobox.GeoBox
        Output grid.
    method : str
        Resampling name (only ``"bilinear"`` and ``"nearest"`` are handled).
    dst_dtype : numpy dtype
        Output dtype (only floating point is handled).
    src_nodata, dst_nodata : float or None
        Source nodata marker; output value for pixels without valid data (None: NaN).
    dst : ndarray, optional
        Output array of ``dst_geobox.shape``; the returned pixels are a view into it.

    Returns
    -------
    (roi, pixels) or None
        ``roi``: the (row, column) slices of ``dst_geobox`` that the source covers (output
        pixel centres inside the source raster); ``pixels``: the values there. None when the
        fast path does not apply, so the caller falls back to a warp.
    """
    method = str(method).lower()
    if method not in METHODS or not isinstance(bidx, int) or np.dtype(dst_dtype).kind != "f":
        return None
    if rdr.crs is None or dst_geobox.crs is None or rdr.gcps[0] or rdr.rpcs:
        return None
    if dst_geobox.crs != rdr.crs:  # odc-geo's CRS comparison (accepts rasterio CRS)
        return None
    rel = _relation(rdr.transform, dst_geobox.transform)
    if rel is None:
        return None
    sy, oy, sx, ox = rel
    h_dst, w_dst = dst_geobox.shape
    ys_all, xs_all = axis_map(h_dst, sy, oy), axis_map(w_dst, sx, ox)
    rows = np.nonzero((ys_all >= 0) & (ys_all < rdr.height))[0]
    cols = np.nonzero((xs_all >= 0) & (xs_all < rdr.width))[0]
    if rows.size == 0 or cols.size == 0:
        roi = np.s_[0:0, 0:0]
        empty = dst[roi] if dst is not None else np.empty((0, 0), dtype=dst_dtype)
        return roi, empty
    roi = np.s_[int(rows[0]):int(rows[-1]) + 1, int(cols[0]):int(cols[-1]) + 1]
    ys, xs = ys_all[roi[0]], xs_all[roi[1]]
    # source window: the taps of the first and last output pixels, one pixel of margin
    r0 = max(0, int(math.floor(ys[0] - 0.5)))
    r1 = min(rdr.height, int(math.floor(ys[-1] - 0.5)) + 2)
    c0 = max(0, int(math.floor(xs[0] - 0.5)))
    c1 = min(rdr.width, int(math.floor(xs[-1] - 0.5)) + 2)
    window = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
    src = rdr.read(bidx, window=window)
    out = dst[roi] if dst is not None else np.empty((len(ys), len(xs)), dtype=dst_dtype)
    fill = math.nan if dst_nodata is None else float(dst_nodata)
    resample_axis_aligned(src, ys - r0, xs - c0, method, out, nodata=src_nodata, fill=fill)
    return roi, out


def read_source_fast(src: Any, cfg: Any, dst_geobox: Any, dst: np.ndarray | None = None,
                     selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """odc-loader's read contract (``rio_read``) through :func:`read_axis_aligned`.

    Parameters
    ----------
    src : odc.loader.types.RasterSource
    cfg : odc.loader.types.RasterLoadParams
    dst_geobox : GeoBox
    dst : ndarray, optional
    selection : optional
        Band subset selection; anything but None is left to odc-loader.

    Returns
    -------
    (roi, pixels) or None
        As ``odc.loader._rio.rio_read``; None when the fast path does not apply. The decision
        is taken from ``src.geobox`` (the asset's grid from STAC ``proj`` metadata) without
        opening the file; sources without one are left to odc-loader.
    """
    if selection is not None or str(cfg.resampling).lower() not in METHODS:
        return None
    if getattr(src, "meta", None) is not None and src.meta.extra_dims:
        return None
    # decide from the STAC grid (proj:transform/shape) before opening anything, so a band the
    # fast path does not take is opened once, by odc-loader, not twice
    gbox = getattr(src, "geobox", None)
    if (gbox is None or gbox.crs != dst_geobox.crs
            or _relation(gbox.transform, dst_geobox.transform) is None):
        return None
    with rasterio.open(src.uri, "r", sharing=False) as rdr:
        band = int(src.band) if src.band else 0
        if band < 1 or band > rdr.count:
            return None  # odc-loader raises its own error for this
        dst_dtype = _compat.resolve_dst_dtype(rdr.dtypes[band - 1], cfg)
        src_nodata = _compat.resolve_src_nodata(rdr.nodatavals[band - 1], cfg)
        dst_nodata = _compat.resolve_dst_nodata(dst_dtype, cfg, src_nodata)
        with rasterio.Env(VSI_CACHE=False):
            return read_axis_aligned(rdr, band, dst_geobox, str(cfg.resampling), dst_dtype,
                                     src_nodata, dst_nodata, dst=dst)


def warm_up() -> None:
    """Compile (or load from numba's cache) the bilinear kernel for Sentinel-2's uint16 DN.

    The first numba call of a process costs a few tenths of a second; embedding jobs call this
    on every worker while they are planned (:func:`xterrafm.embedding.runtime.warm_readers`),
    so that the first block's reads do not pay it.
    """
    ys = xs = np.array([0.75, 1.25])
    resample_axis_aligned(np.ones((2, 2), dtype="uint16"), ys, xs, "bilinear",
                          np.empty((2, 2), dtype="float32"), nodata=0.0)
