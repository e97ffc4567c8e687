"""Per-tile statistics of a training cube: valid fraction per modality and date, class counts.

Computed once when a dataset is built, with one chunk-aligned pass over the read blocks
(reading only the first band of each modality and the land-cover map), with the numba
kernels of :mod:`xterrafm.tilestats`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.data.cube import TrainingCube
from xterrafm.data.tiles import TileGrid
from xterrafm.tilestats import class_histogram, valid_fraction
from xterrafm.worldcover import WORLDCOVER_CLASSES

with import_gate():
    import numpy as np

__all__ = ["TileStats", "compute_tile_stats"]


@dataclass(frozen=True)
class TileStats:
    """Statistics of the tiles of one cube.

    Attributes
    ----------
    valid : dict of str -> ndarray, shape (n_tiles, n_times)
        Fraction of pixels with a finite first band, per modality, tile and date.
    class_counts : ndarray, shape (n_tiles, n_classes), int64
        Pixels of each :data:`~xterrafm.worldcover.WORLDCOVER_CLASSES` class per tile (zeros without land-cover).
    """

    valid: dict[str, np.ndarray]
    class_counts: np.ndarray


def compute_tile_stats(cube: TrainingCube, grid: TileGrid) -> TileStats:
    """One pass over the read blocks of ``grid`` computing :class:`TileStats`.

    Parameters
    ----------
    cube : TrainingCube
    grid : TileGrid
        Tiles of ``cube`` (from :func:`xterrafm.data.tiles.make_tile_grid`).
    """
    n = grid.n_tiles
    size = grid.tile_size
    valid = {m: np.zeros((n, cube.n_times[m]), dtype=np.float64) for m in cube.modalities}
    counts = np.zeros((n, len(WORLDCOVER_CLASSES)), dtype=np.int64)
    for b in range(grid.n_blocks):
        window = grid.blocks[b]
        tiles = grid.tiles_of_block(b)
        # blocks are trimmed to whole tiles, so the tilestats grid of a block is its tiles
        ty, tx = ((grid.origins[tiles] - window[[0, 2]]) // size).T
        for m in cube.modalities:
            band0 = cube.read_modality(m, window, bands=[0])  # (T, 1, h, w)
            valid[m][tiles] = valid_fraction(band0, size)[:, ty, tx].T
        if cube.has_landcover:
            hist = class_histogram(cube.read_landcover(window), size, values=tuple(WORLDCOVER_CLASSES))
            counts[tiles] = hist[ty, tx]
    return TileStats(valid=valid, class_counts=counts)
