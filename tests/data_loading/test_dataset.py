"""TileDataset: sharding, determinism, chunk-aligned reads, valid-fraction skip, prefetch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from xterrafm import normalize
from xterrafm.data import MultiCropConfig, TileDataset, TrainingCube, consumed_per_worker

TILE = 32


def _tiles_of(dataset: TileDataset, num_workers: int) -> list[int]:
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    return [int(s["tile"]) for s in loader]


def test_tiles_and_skip_of_empty_tile(cube_path):
    ds = TileDataset(cube_path, tile_size=TILE, sampling="uniform")
    # 4 x 4 tiles, the top-left one has no valid pixel in any modality
    assert ds.n_tiles == 15
    assert not any((o == [0, 0]).all() for o in ds.table.origin)
    assert ds.modalities == ("s1", "s2_l2a")
    # S1 is invalid on date 1 in the bottom-right quarter: only date 0 is eligible there
    br = [i for i, o in enumerate(ds.table.origin) if o[0] >= 64 and o[1] >= 64]
    assert br and all(ds.table.valid_dates["s1"][i].tolist() == [0] for i in br)
    assert ds.class_frequencies.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("sampling", ["uniform"])
def test_two_ranks_two_workers_cover_each_tile_once(cube_path, sampling):
    for epoch in (0, 1):
        seen = []
        for rank in range(2):
            ds = TileDataset(cube_path, tile_size=TILE, sampling=sampling, rank=rank,
                             world_size=2, seed=3)
            ds.set_epoch(epoch)
            seen.append(_tiles_of(ds, num_workers=2))
        everything = seen[0] + seen[1]
        assert sorted(everything) == list(range(15)), f"epoch {epoch}: {sorted(everything)}"
        assert set(seen[0]).isdisjoint(seen[1])


def test_deterministic_given_seed_and_epoch(cube_path):
    a = TileDataset(cube_path, tile_size=TILE, seed=1)
    b = TileDataset(cube_path, tile_size=TILE, seed=1)
    first = _tiles_of(a, 0)
    assert first == _tiles_of(b, 0)
    sample_a = next(iter(a))
    sample_b = next(iter(b))
    torch.testing.assert_close(sample_a["inputs"]["s2_l2a"], sample_b["inputs"]["s2_l2a"])
    a.set_epoch(1)
    assert _tiles_of(a, 0) != first
    c = TileDataset(cube_path, tile_size=TILE, seed=2)
    assert _tiles_of(c, 0) != first


def test_weighted_sampling_stays_in_shard_and_favours_rare_classes(cube_path):
    rare = 7  # column of class 80 in the WorldCover histogram
    base = TileDataset(cube_path, tile_size=TILE, sampling="uniform")
    assert base.classes[rare] == 80
    freq = base.class_frequencies
    props = base.class_proportions
    shards = [
        TileDataset(cube_path, tile_size=TILE, sampling="weighted", rank=r, world_size=2,
                    alpha=1.0)
        for r in range(2)
    ]
    drawn = []
    for epoch in range(40):
        sampled = []
        for shard in range(4):
            plan = shards[shard // 2].plan(shard % 2, 2, epoch)
            uniform = base.plan(0, 1, epoch)
            assert len(uniform) == base.n_tiles
            sampled.append(plan.tiles.tolist())
        drawn.extend(t for s in sampled for t in s)
        # shards draw only from their own read blocks: no tile appears in two shards
        for i in range(4):
            for j in range(i + 1, 4):
                assert set(sampled[i]).isdisjoint(sampled[j])
    share = props[np.asarray(drawn), rare].mean()
    assert share > 1.5 * freq[rare]


def test_each_chunk_read_once_per_epoch(big_chunk_cube_path, counting_store):
    store = counting_store(big_chunk_cube_path)
    ds_xr = xr.open_zarr(store, chunks=None, consolidated=False)
    ds = TileDataset(ds_xr, tile_size=TILE, sampling="uniform", prefetch=False,
                     views=MultiCropConfig(global_size=32, local_size=16, n_local=1))
    assert ds.grids[0].n_blocks == 4  # 64 px chunks hold 2 x 2 tiles each
    store.counts.clear()
    samples = list(ds)
    assert len(samples) == ds.n_tiles
    reads = store.chunk_reads()
    assert reads, "no chunk was read"
    assert max(reads.values()) == 1, reads.most_common(3)
    # a tile-by-tile reader reads each 64 px chunk once per tile (4x); we read it once
    s2_reads = sum(v for k, v in reads.items() if k.startswith("s2_l2a/"))
    assert s2_reads <= 4 * 2  # 4 chunks per date, 2 dates at most


def test_raw_samples_are_normalised_without_nan(cube_path):
    ds = TileDataset(cube_path, tile_size=TILE, sampling="uniform", min_valid_fraction=0.5)
    cube = TrainingCube(cube_path)
    rng_dates = {}
    for s in ds:
        t = int(s["tile"])
        y0, x0 = (int(v) for v in ds.table.origin[t])
        for m in ds.modalities:
            x = s["inputs"][m]
            assert torch.isfinite(x).all()
            rng_dates.setdefault(m, 0)
        assert s["landcover"].shape == (TILE, TILE)
        assert s["present"].all()
        lc = cube.read_landcover((y0, y0 + TILE, x0, x0 + TILE))
        np.testing.assert_array_equal(s["landcover"].numpy(), lc)
    # values equal xterrafm.normalize of the raw date that was chosen
    s = next(iter(ds))
    t = int(s["tile"])
    y0, x0 = (int(v) for v in ds.table.origin[t])
    raw = cube.read_modality("s2_l2a", (y0, y0 + TILE, x0, x0 + TILE))
    want = [np.nan_to_num(normalize(raw[d], "s2_l2a")) for d in range(raw.shape[0])]
    got = s["inputs"]["s2_l2a"].numpy()
    assert any(np.allclose(got, w, atol=1e-5) for w in want)


def test_partially_valid_tile_gets_zeros_not_nan():
    s1 = np.full((1, 2, 64, 64), 0.05, np.float32)
    s1[:, :, :8, :] = np.nan  # tile (0, 0) and (0, 32): 75 % valid
    s1[:, :, 32:, 32:] = np.nan  # tile (32, 32): nothing valid -> skipped
    cube = xr.Dataset({"s1": (("time", "band", "y", "x"), s1)})
    ds = TileDataset(cube, tile_size=32, min_valid_fraction=0.7, sampling="uniform")
    assert ds.n_tiles == 3
    for s in ds:
        x = s["inputs"]["s1"]
        assert torch.isfinite(x).all()
        y0 = int(ds.table.origin[int(s["tile"]), 0])
        if y0 == 0:
            assert (x[:, :8] == 0).all() and (x[:, 8:] != 0).all()
    assert TileDataset(cube, tile_size=32, min_valid_fraction=0.8).n_tiles == 1


def test_prefetch_gives_the_same_stream(cube_path):
    views = MultiCropConfig(global_size=32, local_size=16, n_local=1)
    a = TileDataset(cube_path, tile_size=TILE, views=views, batch_size=3, shuffle_window=1,
                    prefetch=True)
    b = TileDataset(cube_path, tile_size=TILE, views=views, batch_size=3, shuffle_window=1,
                    prefetch=False)
    la, lb = list(a), list(b)
    assert len(la) == len(lb) == a.units_per_epoch() > 0
    for x, y in zip(la, lb, strict=True):
        torch.testing.assert_close(x["global"]["s2_l2a"], y["global"]["s2_l2a"])
        assert torch.equal(x["tile"], y["tile"])


def test_resume_mid_epoch_with_two_workers(cube_path):
    views = MultiCropConfig(global_size=32, local_size=16, n_local=1)
    ds = TileDataset(cube_path, tile_size=TILE, views=views, batch_size=2, seed=5)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    full = list(loader)
    assert len(full) == ds.units_per_epoch(2)
    for k in range(1, len(full)):
        ds.set_epoch(0, k)
        rest = list(loader)
        assert [b["tile"].tolist() for b in rest] == [b["tile"].tolist() for b in full[k:]]
        torch.testing.assert_close(rest[0]["local"]["s1"], full[k]["local"]["s1"])


def test_consumed_per_worker_replays_round_robin():
    assert consumed_per_worker([2, 1], 0) == ([0, 0], 0)
    assert consumed_per_worker([2, 1], 1) == ([1, 0], 1)
    assert consumed_per_worker([2, 1], 2) == ([1, 1], 0)
    assert consumed_per_worker([1, 3], 3) == ([1, 2], 0)
    with pytest.raises(ValueError, match="only has"):
        consumed_per_worker([1, 1], 3)


def test_dask_backed_dataset_source(cube_path):
    dask_ds = xr.open_zarr(cube_path, consolidated=False)  # dask-backed, like STAC cubes
    assert dask_ds["s2_l2a"].chunks is not None
    a = TileDataset(dask_ds, tile_size=TILE, sampling="uniform")
    b = TileDataset(cube_path, tile_size=TILE, sampling="uniform")
    sa, sb = next(iter(a)), next(iter(b))
    torch.testing.assert_close(sa["inputs"]["s1"], sb["inputs"]["s1"])


def test_clear_errors(cube_path, tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        TileDataset(cube_path, tile_size=256)
    with pytest.raises(FileNotFoundError, match="not found"):
        TileDataset(tmp_path / "missing.zarr")
    with pytest.raises(ValueError, match="no modality"):
        TileDataset(xr.Dataset({"landcover": (("y", "x"), np.zeros((64, 64), np.uint8))}))
    bad = xr.Dataset({"s1": (("time", "band", "y", "x"), np.zeros((1, 3, 64, 64), np.float32))})
    with pytest.raises(ValueError, match="bands"):
        TileDataset(bad, tile_size=32)
    empty = xr.Dataset({"s1": (("band", "y", "x"), np.full((2, 64, 64), np.nan, np.float32))})
    with pytest.raises(ValueError, match="valid fraction"):
        TileDataset(empty, tile_size=32)
