"""Resumable Zarr output: template + regions, completion markers, kill/resume, fingerprints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import xterrafm
from xterrafm.embedding import runtime
from xterrafm.errors import StoreMismatchError
from xterrafm.store import embed_to_zarr

KW = dict(model="terrafm-tiny", tile=64, block_cells=1, progress=False)
#: Where a store keeps its per-block completion markers (under the array, unseen by Zarr).
MARKERS = Path("embeddings", ".xterrafm", "blocks")


@pytest.fixture(scope="module")
def cube_store(tmp_path_factory, make_cube) -> Path:
    """A 2-date 192 x 170 px S1 cube saved as Zarr (so a subprocess can open the same cube)."""
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    cube = make_cube(192, 170, chunks=64, nan_box=(150, 192, 0, 60))
    cube.compute().to_dataset(name="cube").to_zarr(path, zarr_format=3, consolidated=False)
    return path


def open_cube(path: Path) -> xr.DataArray:
    return xr.open_zarr(path, decode_coords="all", consolidated=False)["cube"]


def test_store_round_trip_keeps_values_crs_and_attrs(cube_store, tmp_path, tiny_weights):
    cube = open_cube(cube_store)
    store = tmp_path / "emb.zarr"
    summary = cube.terrafm.embed_to_zarr(store, weights=tiny_weights, **KW)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64).compute()
    assert summary.complete and summary.counts.blocks_total == 2 * 3 * 3
    assert summary.counts.written.blocks == 18 and summary.counts.found.blocks == 0
    assert summary.counts.written.cells == emb.isel(embedding=0).size
    assert summary.counts.written.empty == int(np.isnan(emb.isel(embedding=0)).sum()) > 0
    assert zarr.open_group(store, mode="r").metadata.zarr_format == 2  # GDAL reads v2
    back = xr.open_zarr(store, decode_coords="all")["embeddings"]
    assert back.rio.crs == cube.rio.crs
    np.testing.assert_array_equal(back.values, emb.values)
    np.testing.assert_array_equal(back.x.values, emb.x.values)
    for key in ("model", "weights_sha256", "modality", "bands", "normalization", "tile", "stride",
                "level", "xterrafm_version"):
        assert back.attrs[key] == emb.attrs[key], key


def test_dataset_accessor_and_patch_level(cube_store, tmp_path, tiny_weights):
    ds = open_cube(cube_store).to_dataset("band")
    ds.attrs["modality"] = "s1"
    store = tmp_path / "patch.zarr"
    summary = ds.terrafm.embed_to_zarr(store, weights=tiny_weights, level="patch", **KW)
    assert summary.complete
    back = xr.open_zarr(store, decode_coords="all")["embeddings"]
    ref = ds.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, level="patch")
    np.testing.assert_array_equal(back.values, ref.values)
    assert back.shape[-2:] == (12, 11)


def test_refuses_a_store_with_other_settings(cube_store, tmp_path, tiny_weights):
    cube = open_cube(cube_store)
    store = tmp_path / "emb.zarr"
    embed_to_zarr(cube, store, weights=tiny_weights, wave_size=5, **KW)
    markers = sorted(os.listdir(store / MARKERS))
    for change, field in [(dict(stride=32), "stride"), (dict(normalize=None), "normalization"),
                          (dict(weights=None), "weights_sha256"), (dict(level="patch"), "level"),
                          (dict(min_valid=0.9), "min_valid")]:
        kw = {**KW, "weights": tiny_weights, **change}
        with pytest.raises(StoreMismatchError, match=f"{field}: store has"):
            embed_to_zarr(cube, store, **kw)
    with pytest.raises(StoreMismatchError, match="grid differs"):
        embed_to_zarr(cube.isel(x=slice(0, 100)), store, weights=tiny_weights, **KW)
    assert sorted(os.listdir(store / MARKERS)) == markers  # nothing lost
    other = tmp_path / "not-ours"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an xterrafm embedding store"):
        embed_to_zarr(cube, other, weights=tiny_weights, **KW)
    assert (other / "data.txt").read_text() == "keep me"
    again = embed_to_zarr(cube, store, weights=tiny_weights, overwrite=True, tile=64,
                          model="terrafm-tiny", stride=32, progress=False)
    assert again.counts.found.blocks == 0 and again.complete


def test_waves_and_hook(cube_store, tmp_path, tiny_weights):
    seen = []
    summary = embed_to_zarr(open_cube(cube_store), tmp_path / "w.zarr", weights=tiny_weights,
                            wave_size=4, on_wave=lambda s: seen.append(s.counts.written.blocks), **KW)
    assert summary.waves == 5 and seen == [4, 8, 12, 16, 18]


_RUNNER = textwrap.dedent("""
    import sys, time
    import dask, torch, xarray as xr
    from xterrafm.store import embed_to_zarr
    torch.set_num_threads(1)
    cube = xr.open_zarr(sys.argv[1], decode_coords="all", consolidated=False)["cube"]
    dask.config.set(scheduler="synchronous")
    embed_to_zarr(cube, sys.argv[2], model="terrafm-tiny", weights=sys.argv[3], tile=64,
                  block_cells=1, progress=False, wave_size=1,
                  on_wave=lambda s: time.sleep(0.4))
""")


def test_killed_run_resumes_without_recomputing(cube_store, tmp_path, tiny_weights):
    cube = open_cube(cube_store)
    full = tmp_path / "full.zarr"
    embed_to_zarr(cube, full, weights=tiny_weights, **KW)

    store = tmp_path / "killed.zarr"
    script = tmp_path / "runner.py"
    script.write_text(_RUNNER)
    proc = subprocess.Popen([sys.executable, str(script), str(cube_store), str(store),
                             tiny_weights])
    blocks_dir = store / MARKERS
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if blocks_dir.is_dir() and len(list(blocks_dir.glob("*.json"))) >= 3:
                break
            assert proc.poll() is None, "runner finished or died before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = sorted(p.stem for p in blocks_dir.glob("*.json"))
    assert 3 <= len(done) < 18, done
    # the chunks each marker vouches for (None: all-NaN, not stored)
    chunk_files = {key: store / key for p in blocks_dir.glob("*.json")
                   for key, rec in json.loads(p.read_text())["chunks"].items() if rec}
    assert chunk_files and all(p.exists() for p in chunk_files.values())
    mtimes = {b: p.stat().st_mtime_ns for b, p in chunk_files.items()}

    runtime.clear_cache()
    summary = embed_to_zarr(cube, store, weights=tiny_weights, **KW)
    assert summary.counts.found.blocks == len(done)
    assert summary.counts.written.blocks == 18 - len(done)
    assert runtime.stats()["blocks"] == 18 - len(done)  # the model ran only for missing blocks
    assert {b: p.stat().st_mtime_ns for b, p in chunk_files.items()} == mtimes
    a = xr.open_zarr(store, decode_coords="all")
    b = xr.open_zarr(full, decode_coords="all")
    np.testing.assert_array_equal(a["embeddings"].values, b["embeddings"].values)
    assert a["embeddings"].attrs == b["embeddings"].attrs
    assert json.loads(a.attrs["xterrafm_fingerprint"]) == json.loads(b.attrs["xterrafm_fingerprint"])
    assert xterrafm.store.pending_blocks(
        cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, block_cells=1),
        str(store)) == []


def _open_without_warnings(path: Path, **kwargs) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path, decode_coords="all", **kwargs)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_opening_a_store_warns_nothing(cube_store, tmp_path, tiny_weights, zarr_format):
    cube = open_cube(cube_store)
    single = tmp_path / "emb.zarr"
    embed_to_zarr(cube, single, weights=tiny_weights, zarr_format=zarr_format, **KW)
    # a store inside a group of a larger hierarchy, as the batch job writes one per CRS
    parent = tmp_path / "multi.zarr"
    zarr.open_group(parent, mode="w", zarr_format=zarr_format)
    embed_to_zarr(cube, parent / "EPSG_32632", weights=tiny_weights, zarr_format=zarr_format,
                  **KW)
    for consolidated in (None, True, False):
        ds = _open_without_warnings(single, consolidated=consolidated)
        assert ds["embeddings"].rio.crs == cube.rio.crs
        assert set(ds.data_vars) == {"embeddings"}
        sub = _open_without_warnings(parent / "EPSG_32632", consolidated=consolidated)
        np.testing.assert_array_equal(sub["embeddings"].values, ds["embeddings"].values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        members = dict(zarr.open_group(parent, mode="r").members(max_depth=None))
    assert "EPSG_32632/embeddings" in members
    assert not any(".xterrafm" in name for name in members)


def test_store_status_counts_blocks_and_cells(cube_store, tmp_path, tiny_weights):
    from xterrafm.embedding import embed_and_plan
    from xterrafm.store import prepare_store, store_status, write_blocks

    cube = open_cube(cube_store)
    store = tmp_path / "partial.zarr"
    with pytest.raises(FileNotFoundError, match="partial.zarr"):
        store_status(store)
    emb, plan = embed_and_plan(cube, model="terrafm-tiny", weights=tiny_weights, tile=64,
                               block_cells=1)
    assert prepare_store(emb, plan, str(store)) == "new"
    fresh = store_status(store)
    assert fresh.template_complete and fresh.counts.found.blocks == 0 and fresh.counts.blocks_total == 18
    assert fresh.counts.cells_total == 2 * 3 * 3 and fresh.counts.cells_failed == fresh.counts.cells_total
    assert fresh.fingerprint == json.loads(zarr.open_group(store).attrs["xterrafm_fingerprint"])
    written = write_blocks(emb, str(store), [(0, 0, 0, 0), (0, 0, 2, 0)], progress=False)
    part = store_status(str(store))
    assert (part.counts.found.blocks, part.counts.blocks_failed, part.complete) == (2, 16, False)
    assert part.counts.found.embedded == written.counts.written.embedded == 1
    assert part.counts.found.empty == written.counts.written.empty == 1  # the window in the NaN box
    assert part.counts.cells_failed == 18 - 2
    embed_to_zarr(cube, store, weights=tiny_weights, **KW)
    full = store_status(store)
    ref = emb.isel(embedding=0).compute()
    assert full.complete and full.counts.found.blocks == 18 and full.counts.cells_failed == 0
    assert full.counts.found.empty == int(np.isnan(ref).sum())
    assert full.to_dict()["complete"] is True
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert store_status(other).fingerprint is None and not store_status(other).complete
