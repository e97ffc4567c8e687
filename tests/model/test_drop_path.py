"""Stochastic depth in the blocks: parameter-free, off in eval, linear rule over depth."""

from __future__ import annotations

import pytest
import torch

from xterrafm.models import FUSION_PREFIX, TerraFM
from xterrafm.models.vit import DropPath, set_drop_path


def test_drop_path_keeps_the_published_layout_and_strict_load(layout_b):
    with torch.device("meta"):
        model = TerraFM("terrafm-b")
    rates = set_drop_path(model.blocks, 0.1)
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and len(rates) == 12
    assert all(b - a == pytest.approx(0.1 / 11) for a, b in zip(rates, rates[1:], strict=False))
    published = {k: tuple(v.shape) for k, v in model.state_dict().items()
                 if not k.startswith(FUSION_PREFIX)}
    assert published == layout_b
    # the published layout still loads with strict=True into a model with drop path set
    small = TerraFM("terrafm-tiny")
    set_drop_path(small.blocks, 0.3)
    state = {k: v for k, v in TerraFM("terrafm-tiny").state_dict().items()}
    with pytest.warns(UserWarning, match="fusion"):
        small.load_state_dict({k: v for k, v in state.items()
                               if not k.startswith(FUSION_PREFIX)}, strict=True)


def test_drop_path_is_identity_in_eval_and_drops_whole_samples_in_training():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(4000, 3, 5)
    drop.eval()
    assert torch.equal(drop(x), x)
    drop.train()
    y = drop(x)
    per_sample = y.flatten(1)
    # each sample is either dropped whole or kept whole and scaled by 1 / (1 - p)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 2.0).all(1))
    dropped = float((per_sample == 0).all(1).float().mean())
    assert 0.45 < dropped < 0.55  # 4000 draws: the standard error is 0.008
    with pytest.raises(ValueError, match="drop-path"):
        DropPath(1.0)


def test_model_with_drop_path_matches_the_plain_model_in_eval_and_differs_in_training():
    torch.manual_seed(0)
    plain = TerraFM("terrafm-tiny")
    dropped = TerraFM("terrafm-tiny")
    dropped.load_state_dict(plain.state_dict())
    set_drop_path(dropped.blocks, 0.5)
    x = torch.randn(8, 12, 32, 32)
    plain.eval()
    dropped.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x, modality="s2_l2a"), plain(x, modality="s2_l2a"))
    plain.train()
    dropped.train()
    with torch.no_grad():
        diff = (dropped(x, modality="s2_l2a") - plain(x, modality="s2_l2a")).abs().max()
    assert float(diff) > 1e-3
