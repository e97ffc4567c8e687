"""Pretraining on CUDA: a single-process NCCL group with DDP steps, bf16 training with an exact
resume, ``cuda:N`` device names and a compiled run (tiny model, a Zarr training cube)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from xterrafm.pretrain import load_checkpoint, load_config, train
from xterrafm.pretrain.loss import DualCenteringDINOLoss, inverse_frequency_weights
from xterrafm.pretrain.trainer import _autocast, _to_device, build_dataset, build_models

pytestmark = pytest.mark.requires_cuda


def _dino_steps(model, student, teacher, criterion, batches, cfg, device, class_freq):
    """The trainer's step (teacher and student forward under autocast, dual-centering DINO
    loss, AdamW) on fixed batches; returns the losses."""
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for batch in batches:
        batch = _to_device(batch, device)
        with _autocast(cfg, device):
            with torch.no_grad():
                t_logits = teacher(batch["global"], batch["global_keep"])
            s_logits = model(batch["global"], batch["global_keep"], batch.get("local"),
                             batch.get("local_keep"))
        weights = inverse_frequency_weights(batch["class_proportions"], class_freq,
                                            cfg.center_alpha)
        loss = criterion(s_logits.float(), t_logits.float(), cfg.teacher_temp, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_single_process_nccl_group_and_ddp_steps(target, train_cube, fast_overrides, free_port):
    """DDP over a one-process NCCL group: the all-reduce runs on the GPU and three DINO steps
    through DistributedDataParallel equal the same steps without it (fp32 and the math SDPA
    kernel, whose backward has no atomics, so that both runs compute alike)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = torch.device(target.indexed_device)
    dist.init_process_group(target.backend, init_method=f"tcp://127.0.0.1:{free_port}",
                            rank=0, world_size=1)
    try:
        assert dist.get_backend() == target.backend
        t = torch.arange(4.0, device=device)
        dist.all_reduce(t)
        assert t.device == device and t.tolist() == [0.0, 1.0, 2.0, 3.0]
        cfg = load_config("tiny", {**fast_overrides, "amp": "fp32"})
        dataset = build_dataset(cfg, [train_cube])
        batches = [b for _, b in zip(range(3), DataLoader(dataset, batch_size=None),
                                     strict=False)]
        student, teacher = build_models(cfg, dataset.modalities)
        plain = copy.deepcopy(student).to(device)
        student.to(device)
        teacher.to(device).train()
        start = [p.detach().clone() for p in student.parameters()]
        freq = torch.as_tensor(dataset.class_frequencies, dtype=torch.float32, device=device)
        criterion = DualCenteringDINOLoss(cfg.out_dim, n_global_views=2,
                                          student_temp=cfg.student_temp).to(device)
        ddp = DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
        with sdpa_kernel(SDPBackend.MATH):
            got = _dino_steps(ddp, student, teacher, copy.deepcopy(criterion), batches, cfg,
                              device, freq)
            want = _dino_steps(plain, plain, teacher, copy.deepcopy(criterion), batches, cfg,
                               device, freq)
    finally:
        dist.destroy_process_group()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    moved = [not torch.equal(p, s) for p, s in zip(student.parameters(), start, strict=True)]
    assert sum(moved) > len(moved) // 2  # the optimiser stepped
    # (the position-embedding interpolation's backward adds atomically on CUDA: float32
    # rounding differences, far below an optimiser step)
    for p, q in zip(student.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_training_on_the_device_resumes_exactly(target, train_cube, fast_overrides, tmp_path):
    """bf16 pretraining on CUDA (amp auto): 3 steps, a checkpoint, 3 more after a resume give
    the losses and teacher of 6 uninterrupted steps; the checkpoint holds the CUDA RNG."""
    cfg = load_config("tiny", {**fast_overrides, "device": target.indexed_device})
    one = train(cfg, [train_cube], tmp_path / "one", max_steps=6)
    first = train(cfg, [train_cube], tmp_path / "two", max_steps=3)
    second = train(cfg, [train_cube], tmp_path / "two", max_steps=6, resume=True)
    assert len(first.losses) == 3 and len(second.losses) == 3
    # GPU kernels may reduce in a varying order (atomics): a bf16 run repeats to ~1e-5; a
    # resume that lost the data position or the RNG changes the loss by > 3 % (other batches)
    np.testing.assert_allclose(first.losses + second.losses, one.losses, rtol=1e-3)
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    for k in a["teacher"]:
        torch.testing.assert_close(a["teacher"][k], b["teacher"][k], rtol=1e-3, atol=1e-5)
    assert ("cuda" in b["rng"][0]) == (target.device == "cuda")
    # the student was saved from the device it trained on
    raw = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert {v.device.type for v in raw["student"].values()} == {target.device}


def test_compiled_training_matches_eager(target, train_cube, fast_overrides, tmp_path):
    """``compile = true`` (the blocks and the head through torch.compile) trains on the GPU
    and follows the eager losses closely."""
    if target.rehearsal:
        pytest.skip("CPU rehearsal: inductor builds C++ kernels for minutes on a CPU; this "
                    "test runs on a GPU only")
    base = {**fast_overrides, "device": target.indexed_device}
    eager = train(load_config("tiny", base), [train_cube], tmp_path / "eager", max_steps=3)
    compiled = train(load_config("tiny", {**base, "compile": True}), [train_cube],
                     tmp_path / "compiled", max_steps=3)
    assert np.isfinite(compiled.losses).all()
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=2e-2)
