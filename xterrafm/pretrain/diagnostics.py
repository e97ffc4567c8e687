"""Collapse diagnostics: teacher entropies (logged by the losses) and the embeddings' effective rank."""

from __future__ import annotations

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError

with import_gate():
    import torch

__all__ = ["embedding_effective_rank", "teacher_entropies"]


def teacher_entropies(probs: torch.Tensor) -> tuple[float, float]:
    """Mean per-row entropy and entropy of the mean row of teacher distributions, in nats.

    Parameters
    ----------
    probs : Tensor (N, K)
        Rows are probability distributions over the K prototypes.

    Returns
    -------
    (float, float)
        ``ln K`` for the first means collapse to uniform; the second near 0 while the first is
        too means every row picks the same prototype (collapse onto one prototype).
    """
    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp_min(1e-30).log()).sum(-1)

    return float(entropy(probs).mean()), float(entropy(probs.mean(0)))


def embedding_effective_rank(embeddings: torch.Tensor) -> float:
    """Effective rank of a set of embeddings: a measure of dimensional collapse.

    ``exp(H(p))`` with ``p`` the normalised squared singular values of the centred
    embeddings: ``D`` when the variance is spread evenly over ``D`` directions, 1 when it lies
    on one direction (collapse).

    Parameters
    ----------
    embeddings : Tensor (N, D)

    Returns
    -------
    float
        Between 1 and ``min(N, D)``.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise UsageError(f"need (N >= 2, D) embeddings, got {tuple(embeddings.shape)}")
    x = embeddings.double()
    s2 = torch.linalg.svdvals(x - x.mean(0)) ** 2
    if float(s2.sum()) == 0.0:
        raise UsageError("all embeddings are identical: the effective rank is undefined")
    p = s2 / s2.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
