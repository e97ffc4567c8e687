"""``TileDataset``: a PyTorch IterableDataset of large co-registered tiles from training cubes.

Per epoch, the tiles of all cubes are partitioned over ``world_size × num_workers`` shards by
read block (see :mod:`xterrafm.data.sharding`), each shard reads its blocks chunk-aligned, one
window of blocks at a time with the next window prefetched by a background thread, and yields
either raw tiles or DINO multi-crop views, optionally already collated into batches.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.bands import MODALITIES
from xterrafm.data.collate import collate_samples
from xterrafm.data.cube import TrainingCube
from xterrafm.data.sampling import (
    class_frequencies,
    class_proportions,
    sampled_class_frequencies,
    tile_weights,
)
from xterrafm.data.sharding import ShardPlan, consumed_per_worker, plan_shard
from xterrafm.data.stats import TileStats, compute_tile_stats
from xterrafm.data.tiles import TileGrid, make_tile_grid
from xterrafm.data.views import MultiCropConfig, make_views
from xterrafm.worldcover import WORLDCOVER_CLASSES

with import_gate():
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["TileDataset", "TileTable"]


@dataclass(frozen=True)
class TileTable:
    """The eligible tiles of all cubes (global tile index = row).

    Attributes
    ----------
    cube : ndarray (n,) int64
        Cube of each tile.
    origin : ndarray (n, 2) int64
        ``(y0, x0)`` pixel origin in its cube.
    block : ndarray (n,) int64
        Global read-block index.
    valid_dates : dict of str -> list of ndarray
        Per modality, per tile, the dates whose valid fraction passes the threshold (empty:
        modality absent from the tile).
    class_counts : ndarray (n, n_classes) int64
    """

    cube: np.ndarray
    origin: np.ndarray
    block: np.ndarray
    valid_dates: dict[str, list[np.ndarray]]
    class_counts: np.ndarray


def _as_cube(source: object, modalities: Sequence[str] | None) -> TrainingCube:
    if isinstance(source, TrainingCube):
        return source
    return TrainingCube(source, modalities=modalities)


class TileDataset(IterableDataset):
    """Large co-registered tiles (default 448 px) from one or more training cubes.

    Parameters
    ----------
    cubes : source or sequence of sources
        Zarr paths, zarr stores, ``xr.Dataset`` objects or :class:`TrainingCube` (see
        :mod:`xterrafm.data.cube` for the layout).
    tile_size : int
        Tile side in pixels.
    min_valid_fraction : float
        A modality counts as present in a tile on a date when at least this fraction of its
        pixels is valid; tiles with no present modality are skipped.
    sampling : {"weighted", "uniform"}
        ``uniform``: each tile once per epoch. ``weighted``: each shard draws as many samples
        as it owns tiles, with replacement, ∝ ``Σ_c p_t(c)·f_c^(−α)`` (``p_t``: the tile's class
        proportions; uniform when the cubes have no land-cover).
    alpha : float
        Exponent α of the land-cover weights.
    views : MultiCropConfig, optional
        Yield DINO multi-crop views instead of raw tiles.
    batch_size : int, optional
        Yield collated batches of this size (use ``DataLoader(batch_size=None)``); the last
        incomplete batch of each shard is dropped when ``drop_last``.
    seed : int
        Seed of plans and augmentations.
    rank, world_size : int, optional
        DDP shard of this process (default: from ``torch.distributed`` when initialised,
        else 0 and 1).
    shuffle_window : int
        Read blocks read and shuffled together.
    prefetch : bool
        Read the next window in a background thread while the current one is consumed.
    normalization : str
        Spec passed to :func:`xterrafm.normalize`; NaN becomes 0 after normalisation.
    modalities : sequence of str, optional
        Restrict to these modalities.

    Notes
    -----
    Raw samples: ``{"tile", "inputs": {m: (C, H, W)}, "present": (M,) bool, "landcover":
    (H, W) uint8, "class_proportions": (K,)}``. View samples: ``{"tile", "global": {m: (G, C,
    S, S)}, "global_keep": (G, M), "local": ..., "local_keep": ..., "class_proportions"}``.
    Modalities absent from a sample (or not kept in a view) are zeros.
    """

    def __init__(
        self,
        cubes: object | Sequence[object],
        *,
        tile_size: int = 448,
        min_valid_fraction: float = 0.5,
        sampling: str = "weighted",
        alpha: float = 0.5,
        views: MultiCropConfig | None = None,
        batch_size: int | None = None,
        drop_last: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle_window: int = 4,
        prefetch: bool = True,
        normalization: str = "terrafm-v1",
        modalities: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cubes, (str, os.PathLike, TrainingCube)) or not isinstance(
            cubes, Sequence
        ):
            cubes = [cubes]
        if not cubes:
            raise ValueError("TileDataset needs at least one training cube")
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cubes = [_as_cube(c, modalities) for c in cubes]
        found = {m for c in self.cubes for m in c.modalities}
        self.modalities: tuple[str, ...] = tuple(m for m in MODALITIES if m in found)
        self.tile_size = tile_size
        self.min_valid_fraction = min_valid_fraction
        self.sampling = sampling
        self.alpha = alpha
        self.views = views
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self._rank = rank
        self._world_size = world_size
        self.shuffle_window = shuffle_window
        self.prefetch = prefetch
        self.normalization = normalization
        self.classes = tuple(WORLDCOVER_CLASSES)
        self.epoch = 0
        self.start_unit = 0
        self.grids: list[TileGrid] = [
            make_tile_grid(c.height, c.width, tile_size, c.chunks) for c in self.cubes
        ]
        self.stats: list[TileStats] = [
            compute_tile_stats(c, g) for c, g in zip(self.cubes, self.grids, strict=True)
        ]
        self.table = self._build_table()
        if len(self.table.cube) == 0:
            raise ValueError(
                f"no tile of {tile_size} px has a modality with valid fraction >= "
                f"{min_valid_fraction}"
            )
        self.class_frequencies = class_frequencies(self.table.class_counts)
        self.class_proportions = class_proportions(self.table.class_counts).astype(np.float32)
        if sampling not in ("weighted", "uniform"):
            raise ValueError(f"sampling must be 'weighted' or 'uniform', got {sampling!r}")
        self.weights = tile_weights(self.table.class_counts, self.class_frequencies, alpha)
        #: Class frequencies of the samples the sampler draws (what the loss's class center
        #: still has to correct): ``f_c`` for uniform sampling, about ``f_c^(1-α)`` weighted.
        self.sampled_class_frequencies = sampled_class_frequencies(
            self.table.class_counts, self.weights if sampling == "weighted" else None)

    # -- tile table ----------------------------------------------------------------------
    def _build_table(self) -> TileTable:
        cube_ids, origins, blocks, counts = [], [], [], []
        dates: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        block_offset = 0
        for ci, (grid, stats) in enumerate(zip(self.grids, self.stats, strict=True)):
            for t in range(grid.n_tiles):
                per_mod = {
                    m: np.flatnonzero(stats.valid[m][t] >= self.min_valid_fraction)
                    if m in stats.valid else np.zeros(0, np.int64)
                    for m in self.modalities
                }
                if not any(v.size for v in per_mod.values()):
                    continue
                cube_ids.append(ci)
                origins.append(grid.origins[t])
                blocks.append(block_offset + grid.block_of_tile[t])
                counts.append(stats.class_counts[t])
                for m in self.modalities:
                    dates[m].append(per_mod[m])
            block_offset += grid.n_blocks
        self._block_windows = np.concatenate([g.blocks for g in self.grids])
        self._block_cube = np.concatenate(
            [np.full(g.n_blocks, i, np.int64) for i, g in enumerate(self.grids)]
        )
        return TileTable(
            cube=np.asarray(cube_ids, np.int64),
            origin=np.asarray(origins, np.int64).reshape(-1, 2),
            block=np.asarray(blocks, np.int64),
            valid_dates=dates,
            class_counts=np.asarray(counts, np.int64).reshape(-1, len(WORLDCOVER_CLASSES)),
        )

    @property
    def n_tiles(self) -> int:
        """Number of eligible tiles (over all cubes)."""
        return int(self.table.cube.shape[0])

    @property
    def rank(self) -> int:
        """DDP rank used for sharding."""
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def world_size(self) -> int:
        """DDP world size used for sharding."""
        if self._world_size is not None:
            return self._world_size
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    # -- epochs and plans ----------------------------------------------------------------
    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and how many units (batches, or samples without ``batch_size``)
        of it this rank's loader has already delivered (to resume mid-epoch)."""
        self.epoch = int(epoch)
        self.start_unit = int(start)

    def plan(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> ShardPlan:
        """The plan of one DataLoader worker of this rank for an epoch."""
        return plan_shard(
            self.table.block,
            self.weights,
            seed=self.seed,
            epoch=self.epoch if epoch is None else epoch,
            shard=self.rank * num_workers + worker,
            n_shards=self.world_size * num_workers,
            sampling=self.sampling,
            shuffle_window=self.shuffle_window,
        )

    def _units(self, n_samples: int) -> int:
        b = self.batch_size or 1
        return n_samples // b if self.drop_last else -(-n_samples // b)

    def units_per_epoch(self, num_workers: int = 1, epoch: int | None = None) -> int:
        """Units (batches or samples) this rank yields in an epoch with ``num_workers``."""
        return sum(
            self._units(len(self.plan(w, max(num_workers, 1), epoch)))
            for w in range(max(num_workers, 1))
        )

    def __len__(self) -> int:  # noqa: D105 - number of units of this rank, 0 workers
        return self.units_per_epoch(1)

    # -- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        plans = [self.plan(w, num_workers) for w in range(num_workers)]
        units = [self._units(len(p)) for p in plans]
        done, turn = consumed_per_worker(units, self.start_unit)
        role = (worker + turn) % num_workers  # a fresh loader starts its turn at worker 0
        b = self.batch_size or 1
        plan = plans[role]
        first, last = done[role] * b, min(units[role] * b, len(plan))
        samples = self._iter_samples(plan, first, last)
        if self.batch_size is None:
            yield from samples
            return
        batch: list[dict] = []
        for s in samples:
            batch.append(s)
            if len(batch) == b:
                yield collate_samples(batch)
                batch = []
        if batch and not self.drop_last:
            yield collate_samples(batch)

    def _sample_rng(self, tile: int, occurrence: int) -> tuple[np.random.Generator, dict]:
        rng = np.random.default_rng([self.seed, self.epoch, int(tile), int(occurrence), 7])
        dates = {}
        for m in self.modalities:
            valid = self.table.valid_dates[m][tile]
            if valid.size:
                dates[m] = int(valid[rng.integers(0, valid.size)])
        return rng, dates

    def _read_window(self, blocks: np.ndarray, needed: dict) -> dict:
        from xterrafm.model_input import normalize_and_fill

        data: dict = {}
        for blk in blocks.tolist():
            cube = self.cubes[int(self._block_cube[blk])]
            window = self._block_windows[blk]
            for m in cube.modalities:
                times = sorted(needed.get((blk, m), ()))
                if not times:
                    continue
                raw = cube.read_modality(m, window, times=times)
                norm = normalize_and_fill(raw, m, self.normalization)[0]
                for i, t in enumerate(times):
                    data[(blk, m, t)] = norm[i]
            if self.views is None:
                data[(blk, "landcover")] = cube.read_landcover(window)
        return data

    def _window_reads(self, plan: ShardPlan, first: int, last: int) -> list[tuple]:
        reads = []
        for w in np.unique(plan.windows[first:last]).tolist():
            idx = np.flatnonzero(plan.windows == w)
            idx = idx[(idx >= first) & (idx < last)]
            needed: dict = {}
            for i in idx.tolist():
                tile = int(plan.tiles[i])
                _, dates = self._sample_rng(tile, int(plan.occurrences[i]))
                blk = int(self.table.block[tile])
                for m, t in dates.items():
                    needed.setdefault((blk, m), set()).add(t)
            blocks = np.unique([int(self.table.block[int(plan.tiles[i])]) for i in idx])
            reads.append((idx, blocks, needed))
        return reads

    def _iter_windows(self, reads: list[tuple]) -> Iterator[tuple[np.ndarray, dict]]:
        if not self.prefetch or len(reads) < 2:
            for idx, blocks, needed in reads:
                yield idx, self._read_window(blocks, needed)
            return
        q: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def produce() -> None:
            try:
                for idx, blocks, needed in reads:
                    item = (idx, self._read_window(blocks, needed))
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as err:  # handed to the consumer, raised there
                q.put(err)

        thread = threading.Thread(target=produce, name="xterrafm-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)

    def _iter_samples(self, plan: ShardPlan, first: int, last: int) -> Iterator[dict]:
        reads = self._window_reads(plan, first, last)
        for idx, data in self._iter_windows(reads):
            for i in idx.tolist():
                yield self._make_sample(int(plan.tiles[i]), int(plan.occurrences[i]), data)

    def _make_sample(self, tile: int, occurrence: int, data: dict) -> dict:
        rng, dates = self._sample_rng(tile, occurrence)
        blk = int(self.table.block[tile])
        wy0, _, wx0, _ = (int(v) for v in self._block_windows[blk])
        y0 = int(self.table.origin[tile, 0]) - wy0
        x0 = int(self.table.origin[tile, 1]) - wx0
        s = self.tile_size
        tiles = {
            m: torch.from_numpy(np.ascontiguousarray(data[(blk, m, t)][:, y0 : y0 + s, x0 : x0 + s]))
            for m, t in dates.items()
        }
        present = [m in tiles for m in self.modalities]
        sample: dict = {
            "tile": tile,
            "class_proportions": torch.from_numpy(self.class_proportions[tile]),
        }
        if self.views is not None:
            sample.update(make_views(rng, tiles, self.modalities, present, self.views))
            return sample
        from xterrafm.bands import get_modality

        sample["inputs"] = {
            m: tiles[m] if m in tiles else torch.zeros(get_modality(m).n_bands, s, s)
            for m in self.modalities
        }
        sample["present"] = torch.tensor(present)
        lc = data[(blk, "landcover")][y0 : y0 + s, x0 : x0 + s]
        sample["landcover"] = torch.from_numpy(np.ascontiguousarray(lc))
        return sample
