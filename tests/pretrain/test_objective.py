"""DINO objective: head, dual-centering loss, schedules and teacher EMA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xterrafm.pretrain import (
    DINOHead,
    DualCenteringDINOLoss,
    cosine_schedule,
    inverse_frequency_weights,
    linear_warmup_constant,
    scaled_lr,
    update_teacher,
)


def _reference_dino_loss(student, teacher, center, t_temp, s_temp, n_global, batch):
    """DINO's loss written out sample by sample, independent of the implementation."""
    n_views = student.shape[0] // batch
    total, terms = 0.0, 0
    for i in range(n_global):
        for v in range(n_views):
            if v == i:
                continue
            for b in range(batch):
                t = teacher[i * batch + b]
                s = student[v * batch + b]
                p_t = torch.exp((t - center) / t_temp)
                p_t = p_t / p_t.sum()
                log_p_s = s / s_temp - torch.logsumexp(s / s_temp, dim=0)
                total += float(-(p_t * log_p_s).sum()) / batch
            terms += 1
    return total / terms


def test_lambda_one_is_exactly_dino():
    torch.manual_seed(0)
    k, b, n_views = 16, 3, 4
    crit = DualCenteringDINOLoss(k, n_global_views=2, student_temp=0.1, center_momentum=0.9,
                                 lam=1.0)
    center = torch.zeros(k)
    for _ in range(3):
        student = torch.randn(n_views * b, k, dtype=torch.float64).float()
        teacher = torch.randn(2 * b, k).float()
        weights = torch.rand(b) * 5  # the class center must not matter at λ = 1
        got = float(crit(student, teacher, 0.05, weights))
        want = _reference_dino_loss(student.double(), teacher.double(), center.double(), 0.05,
                                    0.1, 2, b)
        assert got == pytest.approx(want, rel=1e-5)
        center = 0.9 * center + 0.1 * teacher.mean(dim=0)
        torch.testing.assert_close(crit.center_batch[0], center)


def test_dual_center_uses_inverse_frequency_weights():
    k = 5
    crit = DualCenteringDINOLoss(k, center_momentum=0.0, lam=0.5)
    teacher = torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]] * 2)
    crit.update_center(teacher, torch.tensor([3.0, 1.0]))
    torch.testing.assert_close(crit.center_batch[0], torch.tensor([0.5, 0.5, 0, 0, 0]))
    torch.testing.assert_close(crit.center_class[0], torch.tensor([0.75, 0.25, 0, 0, 0]))
    torch.testing.assert_close(crit.center[0], torch.tensor([0.625, 0.375, 0, 0, 0]))


def test_lambda_changes_the_loss():
    torch.manual_seed(1)
    student, teacher = torch.randn(6, 8), torch.randn(4, 8)
    a = DualCenteringDINOLoss(8, lam=1.0)
    c = DualCenteringDINOLoss(8, lam=0.0)
    for crit in (a, c):
        crit.center_batch.copy_(torch.randn(1, 8, generator=torch.Generator().manual_seed(2)))
        crit.center_class.copy_(torch.randn(1, 8, generator=torch.Generator().manual_seed(3)))
    assert float(a(student, teacher, 0.04)) != pytest.approx(float(c(student, teacher, 0.04)))


def test_inverse_frequency_weights():
    freq = torch.tensor([0.75, 0.25, 0.0])
    props = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0], [0, 0, 0]])
    w = inverse_frequency_weights(props, freq, exponent=1.0)
    torch.testing.assert_close(w, torch.tensor([4 / 3, 4.0, 0.5 * (4 / 3) + 2.0, 1.0]))


def test_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="lam"):
        DualCenteringDINOLoss(4, lam=1.5)
    crit = DualCenteringDINOLoss(4, n_global_views=2)
    with pytest.raises(ValueError, match="multiple"):
        crit(torch.randn(6, 4), torch.randn(3, 4), 0.04)


def test_head_shapes_and_normalised_prototypes():
    torch.manual_seed(0)
    head = DINOHead(32, out_dim=256, hidden_dim=64, bottleneck_dim=16)
    out = head(torch.randn(5, 32))
    assert out.shape == (5, 256)
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(256))
    # |logit| <= |z|·|w| = 1: the bottleneck is L2-normalised and prototypes have norm 1
    assert float(out.detach().abs().max()) <= 1.0 + 1e-5
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad


def test_schedules():
    assert cosine_schedule(0, 100, 1.0, 0.0, warmup_steps=10) == 0.0
    assert cosine_schedule(5, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.5)
    assert cosine_schedule(10, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_schedule(55, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.5)
    assert cosine_schedule(100, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.0)
    m = [cosine_schedule(s, 50, 0.996, 1.0) for s in range(51)]
    assert m[0] == pytest.approx(0.996) and m[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(m, m[1:], strict=False))
    assert linear_warmup_constant(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup_constant(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup_constant(300, 30, 0.04, 0.07) == pytest.approx(0.07)
    assert scaled_lr(5e-4, 512) == pytest.approx(1e-3)
    assert math.isclose(cosine_schedule(3, 10, 2.0, 2.0), 2.0)


def test_update_teacher_is_an_ema():
    torch.manual_seed(0)
    s, t = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in t.state_dict().items()}
    update_teacher(s, t, 0.9)
    for k, v in t.state_dict().items():
        torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * s.state_dict()[k])
    with pytest.raises(ValueError, match="differ"):
        update_teacher(s, torch.nn.Linear(3, 3, bias=False), 0.5)


def test_loss_gradient_flows_only_into_student():
    torch.manual_seed(0)
    student = torch.randn(8, 16, requires_grad=True)
    teacher = torch.randn(4, 16, requires_grad=True)
    loss = DualCenteringDINOLoss(16)(student, teacher, 0.04)
    loss.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None
    # the loss is a mean of cross-entropies, hence >= the teacher entropy
    assert float(loss.detach()) > 0
    assert F.softmax(teacher, -1).shape == (4, 16)
