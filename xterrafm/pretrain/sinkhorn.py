"""Sinkhorn-Knopp normalisation of teacher logits (the teacher centering of DINOv2 and SwAV).

Instead of subtracting an EMA center, the teacher's assignment of the batch's samples to the
K prototypes is made an (approximate) *equipartition*: alternately every prototype receives
the same total mass and every sample its own mass ``r_i``. With uniform ``r`` this is
DINOv2's ``sinkhorn_knopp_teacher``; non-uniform ``r`` (class-balanced weights of the samples'
land cover, :func:`xterrafm.pretrain.loss.inverse_frequency_weights`) shares the prototypes
out between land-cover classes rather than between samples. The result does not depend on
how close the logits of different samples are, which is what keeps a small model from the
uniform or one-prototype collapse that EMA centering lets through early in training.
"""

from __future__ import annotations

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError

with import_gate():
    import torch
    import torch.distributed as dist

__all__ = ["sinkhorn_knopp"]


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temperature: float, sample_mass: torch.Tensor | None = None,
                   n_iter: int = 3) -> torch.Tensor:
    """Per-sample teacher distributions with (near) equal mass per prototype.

    Parameters
    ----------
    logits : Tensor (N, K)
        Teacher logits of this rank's rows (all-reduced over DDP ranks when initialised).
    temperature : float
        Teacher temperature.
    sample_mass : Tensor (N,), optional
        Relative mass of each row (non-negative, not all zero); uniform when omitted.
    n_iter : int
        Alternating normalisations (3 in DINOv2).

    Returns
    -------
    Tensor (N, K)
        Rows are probability distributions.
    """
    if temperature <= 0:
        raise UsageError(f"temperature must be positive, got {temperature}")
    if n_iter < 1:
        raise UsageError(f"n_iter must be >= 1, got {n_iter}")
    x = logits.float() / temperature
    peak = x.max().reshape(1)  # a common shift: exp() stays finite, the result is unchanged
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    q = torch.exp(x - peak).T  # (K, N)
    n_rows = torch.tensor([float(q.shape[1])], device=q.device)
    _all_reduce(n_rows)
    k = q.shape[0]
    if sample_mass is None:
        r = torch.ones(q.shape[1], device=q.device)
    else:
        r = sample_mass.to(device=q.device, dtype=torch.float32).reshape(q.shape[1]).clamp_min(0)
    r_total = _all_reduce(r.sum().reshape(1))
    if float(r_total) <= 0:
        raise UsageError("sample_mass must not be all zero")
    r = r / r_total  # the rows' masses sum to 1 over all ranks
    q = q / _all_reduce(q.sum().reshape(1))
    for _ in range(n_iter):
        q = q / _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(1e-30) / k  # prototypes: 1/K each
        q = q / q.sum(dim=0, keepdim=True).clamp_min(1e-30) * r  # samples: r_i each
    q = q / q.sum(dim=0, keepdim=True).clamp_min(1e-30)  # per-sample distributions
    return q.T
