"""Epoch plans: which samples each (rank, DataLoader worker) shard yields, in which order.

A plan depends only on the seed, the epoch, the tile table and the shard layout, never on
data, so every rank computes the same global partition and a resumed run can skip the samples
it has already consumed without reading them.

- Read blocks (not tiles) are the unit of sharding: a seeded permutation of the blocks is dealt
  round-robin to the ``world_size × num_workers`` shards, so each block (and each stored chunk)
  is read by exactly one shard per epoch, and every tile belongs to exactly one shard.
- Within a shard, ``uniform`` sampling yields every tile once; ``weighted`` sampling draws the
  shard's number of tiles with replacement, ∝ the land-cover weights of its own tiles (tiles of
  other shards are never drawn). Samples are emitted block by block, shuffled inside windows of
  ``shuffle_window`` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["ShardPlan", "plan_shard", "consumed_per_worker"]

SAMPLINGS = ("uniform", "weighted")


@dataclass(frozen=True)
class ShardPlan:
    """Samples of one shard for one epoch.

    Attributes
    ----------
    tiles : ndarray, shape (n,), int64
        Global tile index of each sample, in yield order.
    occurrences : ndarray, shape (n,), int64
        How many earlier samples of this epoch and shard hold the same tile (0 for the first);
        with the tile it seeds the sample's augmentations.
    windows : ndarray, shape (n,), int64
        Read window (group of blocks read together) of each sample, non-decreasing.
    window_blocks : list of ndarray
        Global block indices read by each window.
    """

    tiles: np.ndarray
    occurrences: np.ndarray
    windows: np.ndarray
    window_blocks: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.tiles.shape[0])


def plan_shard(
    block_of_tile: np.ndarray,
    weights: np.ndarray | None,
    *,
    seed: int,
    epoch: int,
    shard: int,
    n_shards: int,
    sampling: str = "uniform",
    shuffle_window: int = 4,
) -> ShardPlan:
    """Plan the samples of shard ``shard`` out of ``n_shards`` for ``epoch``.

    Parameters
    ----------
    block_of_tile : ndarray, shape (n_tiles,)
        Global read block of each eligible tile (tiles skipped for low valid fraction are
        simply absent from the caller's table; pass their block as -1 to drop them here).
    weights : ndarray, shape (n_tiles,), optional
        Land-cover sampling weight of every tile (required for ``weighted``).
    seed, epoch : int
        Randomness of the plan.
    shard, n_shards : int
        This shard (``rank * num_workers + worker``) and the number of shards.
    sampling : {"uniform", "weighted"}
    shuffle_window : int
        Number of blocks read together and shuffled together.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    if shuffle_window < 1:
        raise ValueError("shuffle_window must be >= 1")
    block_of_tile = np.asarray(block_of_tile, dtype=np.int64)
    blocks = np.unique(block_of_tile[block_of_tile >= 0])
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    order = blocks[rng.permutation(blocks.size)]
    mine = order[shard::n_shards]
    shard_rng = np.random.default_rng([seed, epoch, 1 + shard, n_shards])

    tiles_by_block = [np.flatnonzero(block_of_tile == b) for b in mine]
    own = np.concatenate(tiles_by_block) if tiles_by_block else np.zeros(0, np.int64)
    counts = np.ones(own.size, dtype=np.int64)
    if sampling == "weighted" and own.size:
        if weights is None:
            raise ValueError("weighted sampling needs per-tile weights")
        w = np.asarray(weights, dtype=np.float64)[own]
        counts = shard_rng.multinomial(own.size, w / w.sum())
    count_of = dict(zip(own.tolist(), counts.tolist(), strict=True))

    tiles, occ, win, window_blocks = [], [], [], []
    for wi, start in enumerate(range(0, len(mine), shuffle_window)):
        members = mine[start : start + shuffle_window]
        entries = [
            (t, k)
            for group in tiles_by_block[start : start + shuffle_window]
            for t in group.tolist()
            for k in range(count_of[t])
        ]
        perm = shard_rng.permutation(len(entries))
        used = {int(block_of_tile[entries[i][0]]) for i in perm}
        window_blocks.append(np.asarray([b for b in members.tolist() if b in used], np.int64))
        for i in perm:
            tiles.append(entries[i][0])
            occ.append(entries[i][1])
            win.append(wi)
    return ShardPlan(
        tiles=np.asarray(tiles, dtype=np.int64),
        occurrences=np.asarray(occ, dtype=np.int64),
        windows=np.asarray(win, dtype=np.int64),
        window_blocks=window_blocks,
    )


def consumed_per_worker(units_per_worker: list[int], consumed: int) -> tuple[list[int], int]:
    """How many units each DataLoader worker had delivered after ``consumed`` units in total.

    The DataLoader takes units (samples or batches) from its workers in turn, skipping workers
    that are exhausted; this replays that order. A new DataLoader starts its turn at worker 0,
    so a resumed loader must give worker ``i`` the role of worker ``(i + next) % n``.

    Parameters
    ----------
    units_per_worker : list of int
        Units each worker yields in the epoch.
    consumed : int
        Units the training loop has taken from the loader.

    Returns
    -------
    done : list of int
        Units delivered by each worker.
    next : int
        The worker whose turn comes next.
    """
    left = list(units_per_worker)
    done = [0] * len(left)
    if consumed > sum(left):
        raise ValueError(f"consumed {consumed} units but the epoch only has {sum(left)}")
    w = 0
    n = len(left)
    while consumed > 0:
        if left[w] > 0:
            left[w] -= 1
            done[w] += 1
            consumed -= 1
        w = (w + 1) % n
    return done, w
