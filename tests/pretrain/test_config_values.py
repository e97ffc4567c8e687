"""``python -m xterrafm.pretrain`` refuses values that cannot train, before anything runs."""

from __future__ import annotations

import pytest

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

