"""Window grid maths: where the encoder's windows sit and where its outputs land.

The encoder sees square windows of ``tile`` pixels placed every ``stride`` pixels along each
axis, starting at the first pixel. The grid covers the whole scene: the last window may run
past the edge (its outside part is padded and masked), it is never dropped.

Two output levels:

``"tile"``
    One output cell per window (its CLS embedding), on a grid of pixel size ``stride`` whose
    cell centres are the window centres.
``"patch"``
    One output cell per 16 x 16 px patch (the patch tokens), on the input grid zoomed out by
    the patch size. With ``stride < tile`` a patch lies in several windows; it is taken from
    the window in which it is most central (ties go to the earlier window), so every output
    cell equals a patch token of exactly one window.

Everything here is integer maths per axis (:class:`AxisWindows`) plus the geo-referencing of
the output grid with odc-geo (:func:`output_geobox`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.embedding.layout import LEVELS, layout_problem

with import_gate():
    import numpy as np
    from odc.geo.geobox import GeoBox

__all__ = ["LEVELS", "AxisWindows", "BlockSpan", "output_geobox", "window_centres"]


@dataclass(frozen=True)
class BlockSpan:
    """What one output block needs along one axis.

    Attributes
    ----------
    out_start, out_stop : int
        Output cells ``[out_start, out_stop)`` of the block.
    win_start, win_stop : int
        Windows ``[win_start, win_stop)`` whose outputs fill those cells.
    pix_start, pix_stop : int
        Input pixels ``[pix_start, pix_stop)`` those windows cover. ``pix_stop`` may exceed the
        scene size (that part is padding).
    """

    out_start: int
    out_stop: int
    win_start: int
    win_stop: int
    pix_start: int
    pix_stop: int


@dataclass(frozen=True)
class AxisWindows:
    """The window layout along one image axis.

    Parameters
    ----------
    size : int
        Scene size along the axis, in pixels.
    tile : int
        Window side in pixels (a multiple of ``patch``).
    stride : int
        Step between window starts in pixels (``1 <= stride <= tile``; a multiple of
        ``patch`` at the patch level).
    level : {"tile", "patch"}
        Output level (see the module docstring).
    patch : int
        Patch size of the encoder in pixels.
    """

    size: int
    tile: int
    stride: int
    level: str = "tile"
    patch: int = 16

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"the scene must have at least one pixel along each axis; got {self.size}")
        problem = layout_problem(self.tile, self.stride, self.patch, self.level)
        if problem:
            raise ValueError(problem)

    # -- windows ---------------------------------------------------------------------------
    @property
    def n_windows(self) -> int:
        """Number of windows: the fewest that cover the scene (the last may be partial)."""
        if self.size <= self.tile:
            return 1
        return math.ceil((self.size - self.tile) / self.stride) + 1

    @property
    def padded_size(self) -> int:
        """Pixels spanned by all windows, padding included (``>= size``)."""
        return (self.n_windows - 1) * self.stride + self.tile

    # -- output cells ----------------------------------------------------------------------
    @property
    def n_out(self) -> int:
        """Number of output cells: windows (tile level) or patches (patch level)."""
        if self.level == "tile":
            return self.n_windows
        return math.ceil(self.size / self.patch)

    @property
    def cell_pixels(self) -> int:
        """Pixel size of one output cell: ``stride`` (tile level) or ``patch``."""
        return self.stride if self.level == "tile" else self.patch

    @property
    def _margin(self) -> int:
        # patches between a window's start and its central stride-wide part
        return (self.tile // self.patch - self.stride // self.patch) // 2

    def owner(self, out_index: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Window and in-window offset that produce each output cell.

        Parameters
        ----------
        out_index : int or array of int
            Output cell indices along this axis.

        Returns
        -------
        window : ndarray of int
            Index of the window whose output fills the cell.
        offset : ndarray of int
            Position of the cell inside that window's output: 0 at the tile level, the patch
            row/column inside the window at the patch level.
        """
        o = np.asarray(out_index, dtype=np.int64)
        if self.level == "tile":
            return o, np.zeros_like(o)
        s16 = self.stride // self.patch
        k = np.clip(np.floor_divide(o - self._margin, s16), 0, self.n_windows - 1)
        return k, o - k * s16

    def span(self, out_start: int, out_stop: int) -> BlockSpan:
        """The windows and input pixels an output block ``[out_start, out_stop)`` needs."""
        if not 0 <= out_start < out_stop <= self.n_out:
            raise ValueError(f"output block [{out_start}, {out_stop}) outside [0, {self.n_out})")
        k, _ = self.owner(np.array([out_start, out_stop - 1]))
        k0, k1 = int(k[0]), int(k[1]) + 1
        return BlockSpan(out_start, out_stop, k0, k1, k0 * self.stride,
                         (k1 - 1) * self.stride + self.tile)

    def out_chunks(self, cells_per_block: int) -> tuple[int, ...]:
        """Regular output chunks of ``cells_per_block`` cells (last one shorter)."""
        c = max(1, int(cells_per_block))
        n = self.n_out
        return tuple([c] * (n // c) + ([n % c] if n % c else []))

    def spans(self, cells_per_block: int) -> list[BlockSpan]:
        """:meth:`span` of every block of :meth:`out_chunks`."""
        out, start = [], 0
        for c in self.out_chunks(cells_per_block):
            out.append(self.span(start, start + c))
            start += c
        return out


def output_geobox(geobox: GeoBox, y: AxisWindows, x: AxisWindows) -> GeoBox:
    """The geo-referenced grid of the output cells.

    Parameters
    ----------
    geobox : GeoBox
        Grid of the input cube (``height x width`` pixels, any CRS, axis-aligned).
    y, x : AxisWindows
        Window layouts along rows and columns (same level).

    Returns
    -------
    GeoBox
        Tile level: pixel size ``stride`` times the input's, cell centres at window centres.
        Patch level: the input grid zoomed out by the patch size (``ceil(H/16) x ceil(W/16)``).
    """
    with import_gate():
        from affine import Affine

    if y.level != x.level:
        raise ValueError("both axes must use the same level")
    a = geobox.affine
    if y.level == "tile":
        # cell k centre = pixel k*stride + tile/2 = origin shift (tile-stride)/2, then scale
        shift = Affine.translation((x.tile - x.stride) / 2, (y.tile - y.stride) / 2)
        affine = a @ shift @ Affine.scale(x.stride, y.stride)
    else:
        affine = a @ Affine.scale(x.patch, y.patch)
    return GeoBox((y.n_out, x.n_out), affine, geobox.crs)


def window_centres(geobox: GeoBox, y: AxisWindows, x: AxisWindows) -> tuple[np.ndarray, np.ndarray]:
    """Centres of all windows in the input CRS.

    Returns
    -------
    ys : ndarray, shape (n_windows_y,)
    xs : ndarray, shape (n_windows_x,)
        World coordinates of window centres along each axis (axis-aligned grids).
    """
    a = geobox.affine
    rows = np.arange(y.n_windows) * y.stride + y.tile / 2
    cols = np.arange(x.n_windows) * x.stride + x.tile / 2
    return a.f + a.e * rows, a.c + a.a * cols
