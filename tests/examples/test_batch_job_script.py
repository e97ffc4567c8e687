"""examples/batch_job.sh embeds the synthetic scene and resumes on its second run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "examples" / "batch_job.sh"


def test_batch_job_script_runs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out" / "emb.zarr"
    env = dict(os.environ, MODEL="terrafm-tiny", TILE="32", CLUSTER="threads",
               PYTHON=sys.executable, OMP_NUM_THREADS="1", EXTRA="--synthetic-size 128")
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("xterrafm embed summary")[1:3]
    assert "already done (resumed): 0" in first
    assert "windows embedded:       0" in second and "already done (resumed): 32" in second
    assert (tmp_path / "out" / "emb_preview.png").exists()
    assert "terrafm-tiny" in proc.stdout and "EPSG:32632" in proc.stdout
