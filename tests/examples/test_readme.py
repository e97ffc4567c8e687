"""The README's Python quick start runs as written, twice in a row in the same folder (a
newcomer's second try), and says once that its weights are random."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def _quick_start() -> str:
    text = README.read_text()
    section = text[text.index("## Quick start in Python"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_start_runs_twice(tmp_path: Path) -> None:
    code = _quick_start()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for run in range(2):
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"run {run + 1}:\n{proc.stderr[-3000:]}"
        assert "EPSG:32632" in proc.stdout
        assert proc.stderr.count("RandomWeightsWarning") == 1, proc.stderr[-3000:]
        assert "weights='hf'" in proc.stderr
    assert (tmp_path / "embeddings.zarr").exists()
