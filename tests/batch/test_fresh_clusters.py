"""The README's main job on fresh worker processes starts and finishes, run after run.

Each run is a fresh process that starts a fresh LocalCluster, in whose worker nothing of
xterrafm, odc, rasterio or torch is imported yet: the worker's event loop unpickles the first
tasks (the reader driver, the block functions) while an executor thread builds the model and
warms the read kernels. With the import-order races of eager package ``__init__`` files, most
of these first runs lost their only worker (ImportError / _DeadlockError in the worker) and
the job failed; the same test on the code before the fix failed 3 of 4 runs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_main_job_on_fresh_clusters(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for run in range(3):
        work = tmp_path / f"run{run}"
        work.mkdir()
        proc = subprocess.run(
            [sys.executable, "-m", "xterrafm", "embed", "--level", "patch", "--out",
             "out/e.zarr", "--model", "terrafm-tiny", "--synthetic-size", "128", "--tile", "64",
             "-q", "--no-progress"],
            cwd=work, env=env, capture_output=True, text=True, timeout=280)
        assert proc.returncode == 0, f"run {run}:\n{proc.stderr[-3000:]}"
        for sign in ("ImportError", "DeadlockError", "partially initialized", "Traceback"):
            assert sign not in proc.stderr, f"run {run}:\n{proc.stderr[-3000:]}"
