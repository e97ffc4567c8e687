"""Teacher update: exponential moving average of the student's weights."""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import torch
    from torch import nn

__all__ = ["update_teacher"]


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """``θ_teacher ← m·θ_teacher + (1-m)·θ_student`` for every parameter of the same name.

    Parameters
    ----------
    student, teacher : nn.Module
        Modules with identical parameter names (unwrap DDP before calling).
    momentum : float
        EMA momentum ``m`` in [0, 1] (cosine 0.996 -> 1 over training).
    """
    s_params = dict(student.named_parameters())
    t_params = dict(teacher.named_parameters())
    if s_params.keys() != t_params.keys():
        missing = sorted(set(s_params) ^ set(t_params))[:5]
        raise ValueError(f"student and teacher parameters differ, e.g. {missing}")
    names = list(s_params)
    t_list = [t_params[n] for n in names]
    s_list = [s_params[n].detach() for n in names]
    torch._foreach_mul_(t_list, momentum)
    torch._foreach_add_(t_list, s_list, alpha=1.0 - momentum)
