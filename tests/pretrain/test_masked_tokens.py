"""Masked-token objective (iBOT / DINOv2): block masks, patch loss, model path, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from xterrafm.pretrain import load_checkpoint, load_config, train
from xterrafm.pretrain.head import DINOHead
from xterrafm.pretrain.ibot import MaskedPatchLoss, block_masks
from xterrafm.pretrain.multiview import MultiViewModel


def test_block_masks_follow_probability_ratio_and_seed():
    gen = torch.Generator().manual_seed(3)
    masks = block_masks(400, (6, 6), probability=0.5, ratio=(0.1, 0.5), generator=gen)
    assert masks.shape == (400, 36) and masks.dtype == torch.bool
    counts = masks.sum(dim=1)
    masked = counts > 0
    # about half the rows; a binomial(400, 0.5) is outside 150..250 with p < 1e-6
    assert 150 <= int(masked.sum()) <= 250
    # every masked row within the ratio range (round(0.1*36) = 4 .. round(0.5*36) = 18)
    assert int(counts[masked].min()) >= 3 and int(counts[masked].max()) <= 18
    assert 0.2 < float(counts[masked].float().mean()) / 36 < 0.4  # mean ratio 0.3
    # blocks, not scattered tokens: most masked rows hold a 2 x 2 square of masked tokens
    grid = masks.reshape(400, 6, 6).float()
    squares = F.avg_pool2d(grid[:, None], 2, stride=1).flatten(1).max(dim=1).values
    assert float((squares[masked] == 1).float().mean()) > 0.8
    same = block_masks(400, (6, 6), 0.5, (0.1, 0.5), torch.Generator().manual_seed(3))
    assert torch.equal(same, masks)
    assert not block_masks(10, (6, 6), 0.0, (0.1, 0.5), gen).any()
    assert (block_masks(10, (6, 6), 1.0, (0.1, 0.5), gen).sum(dim=1) > 0).all()


def test_patch_loss_weights_rows_equally_and_centres():
    torch.manual_seed(0)
    masks = torch.zeros(3, 4, dtype=torch.bool)
    masks[0, :1] = True  # one token
    masks[2, :] = True   # four tokens; row 1 unmasked
    n = int(masks.sum())
    s, t = torch.randn(n, 8), torch.randn(n, 8)
    crit = MaskedPatchLoss(8, student_temp=0.1, center_momentum=0.9)
    loss = crit(s, t, masks, teacher_temp=0.04)
    ce = -(F.softmax(t / 0.04, -1) * F.log_softmax(s / 0.1, -1)).sum(-1)
    # the mean of the two masked rows' mean cross-entropies, not the mean over tokens
    expected = (ce[0] + ce[1:].mean()) / 2
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, ce.mean())
    torch.testing.assert_close(crit.center, 0.1 * t.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="masked tokens"):
        crit(s[:-1], t, masks, 0.04)


def _model(mask_token=True):
    from xterrafm.models.terrafm import TerraFM

    torch.manual_seed(0)
    backbone = TerraFM("terrafm-tiny-p8")
    head = DINOHead(backbone.embed_dim, 16, 32, 8, 3)
    return MultiViewModel(backbone, head, ("s1", "s2_l2a"), mask_token=mask_token).train()


def test_masked_views_replace_tokens_and_pick_masked_positions():
    model = _model()
    with torch.no_grad():
        model.mask_token.normal_()
    x = {"s1": torch.randn(3, 2, 32, 32), "s2_l2a": torch.randn(3, 12, 32, 32)}
    keep = torch.tensor([[True, True], [False, True], [True, False]])
    masks = torch.zeros(3, 16, dtype=torch.bool)
    masks[0, 5:9] = True
    masks[2, [0, 15]] = True
    with torch.no_grad():
        plain = model.encode(x, keep)
        whole = model.encode(x, keep, masks, mask_tokens=False, return_tokens=True)
        hidden = model.encode(x, keep, masks, return_tokens=True)
        t_logits, t_patch = model(x, keep, masks=masks, mask_tokens=False)
        s_logits, s_patch = model(x, keep, masks=masks)
    # the token path gives the CLS of the plain path when nothing is replaced
    torch.testing.assert_close(whole[:, 0], plain, rtol=1e-5, atol=1e-5)
    # masked rows change, the unmasked row does not
    assert not torch.allclose(hidden[0, 0], plain[0], atol=1e-4)
    assert not torch.allclose(hidden[2, 0], plain[2], atol=1e-4)
    torch.testing.assert_close(hidden[1], whole[1])
    # patch logits are the head at the masked positions, in row-major order
    assert t_patch.shape == (6, 16) and s_patch.shape == (6, 16)
    torch.testing.assert_close(t_patch, model.head(whole[:, 1:][masks]))
    torch.testing.assert_close(s_patch, model.head(hidden[:, 1:][masks]))
    torch.testing.assert_close(t_logits, model.head(plain), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(s_logits, t_logits, atol=1e-4)
    with pytest.raises(ValueError, match="without a mask token"):
        _model(mask_token=False).encode(x, keep, masks)


def test_mask_token_gets_gradient():
    model = _model()
    x = {"s1": torch.randn(2, 2, 32, 32), "s2_l2a": torch.randn(2, 12, 32, 32)}
    keep = torch.ones(2, 2, dtype=torch.bool)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, :4] = True
    _, patch = model(x, keep, masks=masks)
    patch.sum().backward()
    assert model.mask_token.grad is not None and float(model.mask_token.grad.abs().sum()) > 0


def test_training_with_masked_tokens_resumes_exactly_and_exports_the_backbone(
        pretrain_cube, tmp_path, fast_overrides):
    fast_overrides.update(ibot_weight=1.0, mask_probability=1.0, checkpoint_every=3)
    cfg = load_config("tiny", fast_overrides)
    one = train(cfg, [pretrain_cube], tmp_path / "one", max_steps=6)
    train(cfg, [pretrain_cube], tmp_path / "two", max_steps=3)
    second = train(cfg, [pretrain_cube], tmp_path / "two", max_steps=6, resume=True)
    np.testing.assert_allclose(second.losses, one.losses[3:], rtol=0, atol=1e-6)
    rows = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["patch_loss"]) and r["patch_loss"] > 0 for r in rows)
    assert all(0 <= r["patch_teacher_entropy"] <= np.log(256) + 1e-6 for r in rows)
    assert all(r["patch_teacher_entropy"] <= r["patch_teacher_marginal_entropy"] + 1e-6
               <= np.log(256) + 2e-6 for r in rows)
    state = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    assert "mask_token" in state["student"] and "center" in state["patch_criterion"]
    assert float(state["patch_criterion"]["center"].abs().sum()) > 0
    # the student's mask token was trained, and the exported backbone does not carry it
    assert float(state["student"]["mask_token"].abs().sum()) > 0
    exported = load_file(str(one.export_path))
    assert not any("mask" in k for k in exported)
    # the objective cannot be switched off in a resumed run
    off = load_config("tiny", {**fast_overrides, "ibot_weight": 0.0})
    with pytest.raises(ValueError, match="ibot_weight"):
        train(off, [pretrain_cube], tmp_path / "one", max_steps=8, resume=True)
