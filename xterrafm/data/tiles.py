"""Chunk-aligned tile grids: where the large training tiles lie and which block reads them.

Tiles of ``tile_size`` px are laid out inside *read blocks*: windows whose sides are the
smallest multiple of the stored chunk side that holds a tile. Each block is read once and
serves all of its tiles, so every stored chunk is read once per epoch. When the tile side is not
a multiple of the chunk side (e.g. 448 px tiles in 512 px chunks) the few pixels of a block that
no tile covers are not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["TileGrid", "make_tile_grid"]


@dataclass(frozen=True)
class TileGrid:
    """Tiles and read blocks of one cube.

    Attributes
    ----------
    tile_size : int
        Tile side in pixels.
    origins : ndarray, shape (n_tiles, 2), int64
        ``(y0, x0)`` pixel origin of every tile (row-major over blocks, then within a block).
    block_of_tile : ndarray, shape (n_tiles,), int64
        Index of the read block that holds each tile.
    blocks : ndarray, shape (n_blocks, 4), int64
        ``(y0, y1, x0, x1)`` pixel window of every read block, clipped to the cube.
    """

    tile_size: int
    origins: np.ndarray
    block_of_tile: np.ndarray
    blocks: np.ndarray

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return int(self.origins.shape[0])

    @property
    def n_blocks(self) -> int:
        """Number of read blocks."""
        return int(self.blocks.shape[0])

    def tiles_of_block(self, block: int) -> np.ndarray:
        """Indices of the tiles inside read block ``block``."""
        return np.flatnonzero(self.block_of_tile == block)


def _block_side(tile_size: int, chunk: int) -> int:
    return chunk * math.ceil(tile_size / chunk)


def make_tile_grid(
    height: int, width: int, tile_size: int, chunks: tuple[int, int] | None = None
) -> TileGrid:
    """Lay non-overlapping tiles over a ``height`` x ``width`` cube, aligned to its chunks.

    Parameters
    ----------
    height, width : int
        Cube size in pixels.
    tile_size : int
        Tile side in pixels.
    chunks : (int, int), optional
        Stored chunk sides ``(y, x)`` in pixels; ``None`` means one block per tile.

    Returns
    -------
    TileGrid
        Tiles that fit entirely inside the cube. Raises ``ValueError`` when none fits.
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if tile_size > height or tile_size > width:
        raise ValueError(
            f"tile_size {tile_size} px does not fit in a cube of {height} x {width} px"
        )
    cy, cx = chunks if chunks is not None else (tile_size, tile_size)
    if cy < 1 or cx < 1:
        raise ValueError(f"chunk sides must be positive, got {chunks}")
    by, bx = _block_side(tile_size, cy), _block_side(tile_size, cx)
    origins, owner, blocks = [], [], []
    for y0 in range(0, height, by):
        for x0 in range(0, width, bx):
            y1, x1 = min(y0 + by, height), min(x0 + bx, width)
            inside = [
                (ty, tx)
                for ty in range(y0, y1 - tile_size + 1, tile_size)
                for tx in range(x0, x1 - tile_size + 1, tile_size)
            ]
            if not inside:
                continue
            # Only read what the tiles need: trim the block to the tiles' extent.
            ty1 = max(t[0] for t in inside) + tile_size
            tx1 = max(t[1] for t in inside) + tile_size
            owner.extend([len(blocks)] * len(inside))
            origins.extend(inside)
            blocks.append((y0, ty1, x0, tx1))
    return TileGrid(
        tile_size=tile_size,
        origins=np.asarray(origins, dtype=np.int64).reshape(-1, 2),
        block_of_tile=np.asarray(owner, dtype=np.int64),
        blocks=np.asarray(blocks, dtype=np.int64).reshape(-1, 4),
    )
