"""Training loop: exact resume, checkpoints, export round trip, CLI, metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from xterrafm import load_model
from xterrafm.pretrain import load_checkpoint, load_config, train
from xterrafm.pretrain.__main__ import main, parse_args
from xterrafm.pretrain.config import shipped_configs


def _losses(path):
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("workers", [2])
def test_resume_is_exact(pretrain_cube, tmp_path, fast_overrides, workers):
    fast_overrides.update(num_workers=workers, checkpoint_every=3)
    cfg = load_config("tiny", fast_overrides)
    n = 5  # not a multiple of the epoch length (16 tiles / batch 4 = 4 batches per epoch)
    one = train(cfg, [pretrain_cube], tmp_path / "one", max_steps=2 * n)
    first = train(cfg, [pretrain_cube], tmp_path / "two", max_steps=n)
    ckpt = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert ckpt["step"] == n
    assert ckpt["data_position"] == [[1, 1]]  # epoch 1, one batch of it consumed
    second = train(cfg, [pretrain_cube], tmp_path / "two", max_steps=2 * n, resume=True)
    assert len(one.losses) == 2 * n and len(second.losses) == n
    np.testing.assert_allclose(first.losses + second.losses, one.losses, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_losses(tmp_path / "two" / "metrics.jsonl"), one.losses,
                               atol=1e-6)
    # the saved teachers agree too
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["teacher"]
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")["teacher"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_checkpoint_contents_and_export_round_trip(pretrain_cube, tmp_path, fast_overrides):
    cfg = load_config("tiny", fast_overrides)
    out = tmp_path / "run"
    result = train(cfg, [pretrain_cube], out, max_steps=4)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"student", "teacher", "optimizer", "criterion", "data_position", "rng",
            "config", "step"} <= set(state)
    assert state["criterion"]["center_batch"].shape == (1, 256)
    assert not (out / ".checkpoint.pt.tmp").exists()
    # metrics: one JSON line per step with the documented keys
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert {"loss", "lr", "teacher_temp", "samples_per_s", "data_wait_fraction"} <= set(lines[0])
    assert 0.0 <= lines[-1]["data_wait_fraction"] <= 1.0
    assert lines[0]["teacher_temp"] == pytest.approx(0.04)
    # export: the teacher backbone in the published layout + fusion keys
    assert result.export_path is not None and result.export_path.exists()
    model = load_model(cfg.model, weights=result.export_path)
    assert model.config.patch_size == 8  # the tiny recipe's terrafm-tiny-p8
    teacher = {k[len("backbone."):]: v for k, v in state["teacher"].items()
               if k.startswith("backbone.")}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, teacher[k])
    assert any(k.startswith("patch_embed.fusion.") for k in teacher)
    x = torch.randn(1, 12, 32, 32)
    with torch.no_grad():
        assert model(x, modality="s2_l2a").shape == (1, model.embed_dim)
    # a fresh run into a folder with a checkpoint is refused (no overwrite of saved work)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, [pretrain_cube], out, max_steps=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(cfg, [pretrain_cube], tmp_path / "nothing", max_steps=2, resume=True)
    with pytest.raises(ValueError, match="batch_size"):
        train(load_config("tiny", {**fast_overrides, "batch_size": 8}), [pretrain_cube], out,
              max_steps=6, resume=True)


def test_configs_and_overrides(tmp_path):
    assert {"tiny", "vitb"} <= set(shipped_configs())
    vitb = load_config("vitb")
    assert vitb.model == "terrafm-b" and vitb.out_dim == 65536 and vitb.global_crop_size == 224
    tiny = load_config("tiny", {"data.batch_size": "16", "center_lambda": "1.0",
                                "compile": "false", "global_crop_scale": "0.3,1.0"})
    assert tiny.batch_size == 16 and tiny.center_lambda == 1.0 and tiny.compile is False
    assert tiny.global_crop_scale == [0.3, 1.0]
    path = tmp_path / "mine.toml"
    path.write_text('[model]\nmodel = "terrafm-tiny"\nout_dim = 128\n[optim]\nbase_lr = 1e-3\n')
    mine = load_config(path)
    assert mine.out_dim == 128 and mine.base_lr == 1e-3
    with pytest.raises(ValueError, match="unknown config key"):
        load_config("tiny", {"batchsize": 3})
    with pytest.raises(ValueError, match="cannot read"):
        load_config("tiny", {"batch_size": "many"})
    with pytest.raises(ValueError, match="unknown config"):
        load_config("nope")
    with pytest.raises(ValueError, match="center_lambda"):
        load_config("tiny", {"center_lambda": 2})
    args, over = parse_args(["--config", "tiny", "--max-steps", "3", "--lr=1", "--resume"])
    assert args.max_steps == 3 and args.resume and over == {"lr": "1"}
    assert main(["--config", "tiny", "--batchsize=2"]) == 2


def test_device_setting_is_checked():
    """Unknown device names are refused up front instead of training on the CPU silently; the
    GPU cases (``cuda:N`` selects that GPU) run in tests/gpu."""
    from xterrafm.errors import UsageError
    from xterrafm.pretrain.trainer import _train_device

    for bad in ("gpu", "cuda0", "CUDA", "mps", ""):
        with pytest.raises(UsageError, match="device must be"):
            load_config("tiny", {"device": bad})
    assert load_config("tiny", {"device": "cuda:1"}).device == "cuda:1"
    assert _train_device("cpu", 0, 1) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert _train_device("auto", 0, 1) == torch.device("cpu")
        for pref in ("cuda", "cuda:0"):
            with pytest.raises(RuntimeError, match="CUDA is not available"):
                _train_device(pref, 0, 1)


def test_cli_runs_in_a_subprocess(pretrain_cube, tmp_path, fast_overrides):
    out = tmp_path / "cli"
    overrides = [f"--{k}={v}" for k, v in fast_overrides.items()]
    cmd = [sys.executable, "-m", "xterrafm.pretrain", "--config", "tiny", "--data",
           str(pretrain_cube), "--output", str(out), "--max-steps", "2", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "teacher backbone exported" in proc.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "teacher_backbone.safetensors").exists()


def test_default_synthetic_scene_without_data(tmp_path):
    """Without --data the trainer writes a synthetic scene + training cube and trains on it."""
    out = tmp_path / "synthetic"
    code = main(["--config", "tiny", "--output", str(out), "--max-steps", "1",
                 "--synthetic_size=224", "--tile_size=112", "--batch_size=2",
                 "--num_workers=0", "--out_dim=256", "--progress=false",
                 "--head_hidden_dim=64", "--head_bottleneck_dim=32", "--n_local_crops=1"])
    assert code == 0
    cube = out / "synthetic" / "training_cube.zarr"
    assert (cube / "zarr.json").exists()
    from xterrafm.data import TrainingCube

    tc = TrainingCube(cube)
    assert set(tc.modalities) == {"s1", "s2_l1c", "s2_l2a"} and tc.has_landcover
    assert (out / "teacher_backbone.safetensors").exists()
