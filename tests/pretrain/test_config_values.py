"""``python -m xterrafm.pretrain`` refuses values that cannot train, before anything runs."""

from __future__ import annotations

import pytest
import torch

from xterrafm.errors import EXIT_USAGE, UsageError
from xterrafm.pretrain.__main__ import main
from xterrafm.pretrain.config import load_config


@pytest.mark.parametrize(("override", "expect"), [
    ("--base_lr=-1", "'base_lr' = -1.0: must be > 0"),
    ("--global_crop_size=44", "'global_crop_size' = 44: must be a multiple of the model's 8 px"),
    ("--model=terrafm-x", "'model' = 'terrafm-x': must be one of"),
    ("--center_momentum=1.5", "'center_momentum' = 1.5: must be in [0, 1)"),
    ("--teacher_temp=0", "'teacher_temp' = 0.0: must be > 0"),
    ("--max_steps=-1", "max_steps"),
    ("--max_steps=0", "'max_steps' = 0: must be >= 1"),
    ("--global_crop_scale=0.5,0.2", "'global_crop_scale'"),
    ("--min_lr=1", "must not exceed base_lr"),
    ("--ibot_weight=-1", "'ibot_weight' = -1.0: must be >= 0"),
    ("--modality_subsets=both", "'modality_subsets' = 'both': must be one of ['uniform', "),
    ("--crop_ratio=2,1", "'crop_ratio' = [2.0, 1.0]: must be [low, high]"),
    ("--mask_ratio=0.1,1.0", "'mask_ratio' = [0.1, 1.0]: must be [low, high]"),
    ("--mask_probability=2", "'mask_probability' = 2.0: must be in [0, 1]"),
])
def test_bad_values_exit_2_naming_the_key_before_training(tmp_path, capsys, override, expect):
    out = tmp_path / "run"
    assert main(["--output", str(out), override]) == EXIT_USAGE
    assert expect in capsys.readouterr().err
    assert not out.exists()  # nothing generated, nothing trained, nothing exported


def test_max_steps_option_must_be_positive(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["--output", str(out), "--max-steps", "-1"])
    assert info.value.code == EXIT_USAGE
    assert "--max-steps" in capsys.readouterr().err
    assert not out.exists()


def test_shipped_configs_pass_and_api_refuses_the_same_values():
    for name in ("tiny", "vitb"):
        load_config(name)
    with pytest.raises(UsageError, match="teacher_temp"):
        load_config("tiny", {"teacher_temp": 0})


def test_crop_sizes_follow_the_model_patch_size():
    """Crops must hold whole patches of the configured model: 8 px for the tiny recipe's
    ``terrafm-tiny-p8``, 16 px for the published variants."""
    assert load_config("tiny", {"global_crop_size": 40}).global_crop_size == 40
    with pytest.raises(UsageError, match="multiple of the model's 16 px patch size"):
        load_config("tiny", {"model": "terrafm-tiny", "global_crop_size": 40})



def test_view_rules_reach_the_dataset(pretrain_cube, fast_overrides):
    from xterrafm.pretrain import build_dataset

    cfg = load_config("tiny", {**fast_overrides, "modality_subsets": "single",
                               "crop_ratio": "1,1"})
    ds = build_dataset(cfg, [pretrain_cube])
    assert ds.views.ratio == (1.0, 1.0) and ds.views.modality_subsets == "single"
    batch = next(iter(ds))
    assert (batch["global_keep"].sum(dim=1) == 1).all()
    assert (batch["local_keep"].sum(dim=1) == 1).all()
    # the shipped rule draws subsets with both modalities too (one epoch: 32 global views,
    # each keeps both with probability 1/3)
    shipped = build_dataset(load_config("tiny", fast_overrides), [pretrain_cube])
    kept = torch.cat([b["global_keep"] for b in shipped])
    assert kept.shape[0] == 32 and (kept.sum(dim=1) == 2).any()
