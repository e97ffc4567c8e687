"""DDP: two processes on CPU with the gloo backend, launched by torch.distributed.run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from xterrafm.pretrain import load_checkpoint, load_config, train


def _torchrun_two_ranks(cube, out, overrides, steps):
    """``python -m xterrafm.pretrain`` under torchrun, 2 CPU ranks (gloo), bounded in time."""
    args = [f"--{k}={v}" for k, v in overrides.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           "--nproc_per_node=2", "-m", "xterrafm.pretrain", "--config", "tiny", "--data",
           str(cube), "--output", str(out), "--max-steps", str(steps), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_process_gloo_run(pretrain_cube, tmp_path, fast_overrides):
    out = tmp_path / "ddp"
    fast_overrides.update(batch_size=2, checkpoint_every=3)
    _torchrun_two_ranks(pretrain_cube, out, fast_overrides, steps=3)
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


def test_two_process_gloo_run_with_masked_tokens(pretrain_cube, tmp_path, fast_overrides):
    """The masked-token term under DDP: two ranks, each with its own masks, train the mask
    token and the (all-reduced) patch centre and checkpoint them."""
    out = tmp_path / "ddp_ibot"
    fast_overrides.update(batch_size=2, checkpoint_every=2, ibot_weight=1.0,
                          mask_probability=1.0)
    _torchrun_two_ranks(pretrain_cube, out, fast_overrides, steps=2)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["patch_loss"] > 0 and torch.isfinite(torch.tensor(r["patch_loss"]))
               for r in records)
    state = load_checkpoint(out / "checkpoint.pt")
    assert float(state["patch_criterion"]["center"].abs().sum()) > 0
    assert float(state["student"]["mask_token"].abs().sum()) > 0
