"""A job rerun on a finished store has nothing to embed: it says so and logs no worker error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--model", "terrafm-tiny", "--tile", "32", "--synthetic-size", "128", "--no-progress",
        "--no-preview", "--cluster", "local", "--n-workers", "1", "--threads-per-worker", "2"]


def _run(out: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "xterrafm", "embed", "--out", str(out), *TINY],
                          capture_output=True, text=True, timeout=240, env=env, cwd=cwd)


@pytest.mark.requires_network_loopback
@pytest.mark.timeout(500)
def test_a_rerun_of_a_finished_job_resumes_without_cancelled_tasks(tmp_path: Path) -> None:
    out = tmp_path / "emb.zarr"
    first = _run(out, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "0 resumed" in first.stdout
    again = _run(out, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 blocks written" in again.stdout and "0 resumed" not in again.stdout
    # the model build started for the job is left to finish, not cancelled under the worker
    assert "CancelledError" not in again.stderr, again.stderr[-3000:]
