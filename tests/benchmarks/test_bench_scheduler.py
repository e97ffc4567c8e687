"""benchmarks/bench_scheduler.py: both scheduler settings embed the whole scene, on clusters that
really run with root-task queuing on (distributed's default) and off (xterrafm's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.requires_network_loopback
@pytest.mark.timeout(200)
def test_both_settings_embed_every_window(tmp_path):
    pytest.importorskip("distributed")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_scheduler.py"), "--model", "terrafm-tiny",
         "--side", "224", "--chunk", "112", "--tile", "32", "--threads", "1", "--rounds", "1",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert out["windows"] == 49 and out["blocks"] == 4
    assert out["xterrafm"]["worker_saturation"] == "inf"
    assert out["distributed"]["worker_saturation"] == "1.1"
    for name in ("xterrafm", "distributed"):
        assert len(out[name]["runs_s"]) == 1 and out[name]["median_s"] > 0
    assert out["speedup"] > 0
