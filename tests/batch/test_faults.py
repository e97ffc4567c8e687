"""Batch jobs survive faults: a killed worker, an unreadable input, Ctrl-C.

Each disturbed job must end with the same store as an undisturbed run of the same command
(the session fixture ``reference_store``): finished blocks are kept, a rerun resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

from xterrafm.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, main

pytestmark = pytest.mark.slow

LOCAL_2x1 = ["--cluster", "local", "--n-workers", "2", "--threads-per-worker", "1"]


def _embeddings(store: Path) -> np.ndarray:
    ds = xr.open_zarr(store, consolidated=False, decode_coords="all")
    return ds["embeddings"].values


def _markers(store: Path) -> list[Path]:
    folder = store / "embeddings" / ".xterrafm" / "blocks"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _wait_for_markers(store: Path, proc: subprocess.Popen, n: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = len(_markers(store))
        if found >= n:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"job ended (rc={proc.returncode}) before {n} blocks:\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} blocks finished within {timeout} s")


def _start_job(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "xterrafm", "embed", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        start_new_session=True,
    )


def _total_blocks(reference_store: Path) -> int:
    return len(_markers(reference_store))


def test_killed_worker_the_job_still_completes(
    batch_scene, reference_store: Path, tiny_job_args: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "emb.zarr"
    source = str(batch_scene.item_collections["s2_l2a"])
    proc = _start_job([source, "--out", str(out), *LOCAL_2x1, "--wave-size", "2",
                       *tiny_job_args], tmp_path)
    try:
        done_at_kill = _wait_for_markers(out, proc, 2)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if any("spawn_main" in part or "forkserver" in part for part in p.cmdline())]
        assert workers, "no worker processes found under the job"
        workers[0].send_signal(signal.SIGKILL)
        out_text, err_text = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_OK, err_text
    assert done_at_kill < _total_blocks(reference_store), "the job had finished before the kill"
    assert len(_markers(out)) == _total_blocks(reference_store)
    np.testing.assert_array_equal(_embeddings(out), _embeddings(reference_store))


def test_unreadable_input_fails_naming_the_href_and_a_rerun_resumes(
    batch_scene, reference_store: Path, tiny_job_args: list[str], tmp_path: Path, capsys
) -> None:
    scene = tmp_path / "scene"
    shutil.copytree(batch_scene.root / "stac", scene / "stac")
    shutil.copytree(batch_scene.root / "data" / "s2_l2a", scene / "data" / "s2_l2a")
    rel = batch_scene.band_paths["s2_l2a"][1]["B04"].relative_to(batch_scene.root)
    bad = scene / rel
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"not a GeoTIFF")
    source = str(scene / "stac" / "item_collections" / "s2_l2a.json")
    out = tmp_path / "emb.zarr"
    per_date = _total_blocks(reference_store) // 2
    # blocks go out date by date: the first waves (date 0) finish, date 1 cannot be read
    args = ["embed", source, "--out", str(out), "--cluster", "threads", "--wave-size",
            str(per_date), *tiny_job_args]
    assert main(args) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert str(bad) in err, err
    assert len(_markers(out)) == per_date

    bad.write_bytes(good_bytes)
    assert main(args) == EXIT_OK
    summary = capsys.readouterr().out
    assert "already done (resumed): " + str(_windows_in_blocks(out, per_date)) in summary
    np.testing.assert_array_equal(_embeddings(out), _embeddings(reference_store))


def _windows_in_blocks(store: Path, n_first: int) -> int:
    counts = [json.loads(p.read_text()) for p in _markers(store)]
    date0 = [c for c in counts if c["region"][0][0] == 0]  # region along time starts at 0
    assert len(date0) == n_first
    return sum(c["cells_embedded"] + c["cells_empty"] for c in date0)


def test_sigint_keeps_a_consistent_store_and_a_rerun_resumes(
    batch_scene, reference_store: Path, tiny_job_args: list[str], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "emb.zarr"
    source = str(batch_scene.item_collections["s2_l2a"])
    args = [source, "--out", str(out), "--wave-size", "2", *tiny_job_args]
    proc = _start_job([*args, *LOCAL_2x1], tmp_path)
    try:
        _wait_for_markers(out, proc, 2)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err_text = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED, err_text
    assert "interrupted" in err_text
    finished = _markers(out)
    assert 0 < len(finished) < _total_blocks(reference_store)
    # every block marked finished holds its final values already
    ref = _embeddings(reference_store)
    part = _embeddings(out)
    for marker in finished:
        region = tuple(slice(a, b) for a, b in json.loads(marker.read_text())["region"])
        np.testing.assert_array_equal(part[region], ref[region])

    # resume on this process's threads: the store does not depend on the scheduler
    assert main(["embed", *args, "--cluster", "threads", "-q"]) == EXIT_OK
    np.testing.assert_array_equal(_embeddings(out), ref)
