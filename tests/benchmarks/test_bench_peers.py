"""benchmarks/bench_peers.py runs its three contenders on a tiny scene, and they compute the same
embeddings: the published computation written out in the benchmark equals xterrafm's model,
and the hand loop's and the xbatcher loop's embeddings equal the store's (no timings checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_the_published_computation_equals_xterrafm_s_model():
    sys.path.insert(0, str(BENCH))
    try:
        from published_model import published_forward
    finally:
        sys.path.remove(str(BENCH))
    import xterrafm

    net = xterrafm.load_model("terrafm-tiny", seed=3)
    x = torch.randn(3, 12, 64, 80)  # a 4 x 5 patch grid: positions resized as published
    with torch.inference_mode():
        want = net(x, modality="s2_l2a")
        got = published_forward(net.state_dict(), x, "s2_l2a", heads=net.config.num_heads)
        other = published_forward(net.state_dict(), x, "s2_l1c", heads=net.config.num_heads)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (other - want).abs().max() > 1e-2  # the stem named is the stem used


@pytest.mark.requires_network_loopback
@pytest.mark.timeout(280)
def test_bench_peers_runs_all_contenders_on_the_same_windows(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("xbatcher")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_peers.py"), "--model", "terrafm-tiny", "--side",
         "128", "--tile", "64", "--rounds", "1", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=260, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert summary["windows"] == 4 and summary["xterrafm_precision"] in ("fp32", "bf16")
    for name in ("xterrafm", "hand_loop", "xbatcher"):
        assert len(summary[f"{name}_runs_s"]) == 1 and summary[f"{name}_best_s"] > 0
    assert summary["speedup_vs_hand_loop"] > 0 and summary["speedup_vs_xbatcher"] > 0
    # the same windows and the same computation: the loops' embeddings are the store's
    assert summary["min_cosine_hand_vs_xbatcher"] > 0.999
    if summary["xterrafm_precision"] == "fp32":
        assert summary["min_cosine_xterrafm_vs_hand"] > 0.999
    else:
        assert summary["min_cosine_xterrafm_vs_hand"] > 0.99
