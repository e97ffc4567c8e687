"""KoLeo regulariser: spreads a batch of embeddings over the unit sphere (DINOv2).

The Kozachenko-Leonenko differential-entropy estimator of L2-normalised embeddings is, up to
constants, the mean log distance of each embedding to its nearest neighbour in the batch.
Minimising its negative pushes neighbours apart and counters *dimensional collapse* (features
that use only one or two directions of the embedding space), which a DINO loss alone does not
prevent at small batch sizes.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import torch
    import torch.nn.functional as F

__all__ = ["koleo_loss"]


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative mean log nearest-neighbour distance of L2-normalised embeddings.

    Parameters
    ----------
    features : Tensor, shape (N, D)
        Embeddings of ``N >= 2`` distinct samples (one view each).
    eps : float
        Added to the distances before the logarithm (identical embeddings stay finite).

    Returns
    -------
    Tensor
        Scalar; lower when the embeddings are spread out.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"koleo_loss needs (N >= 2, D) features, got {tuple(features.shape)}")
    x = F.normalize(features.float(), dim=-1, eps=eps)
    with torch.no_grad():
        sim = x @ x.T
        sim.fill_diagonal_(-2.0)  # never one's own neighbour
        nearest = sim.argmax(dim=1)
    dist = (x - x[nearest]).norm(dim=-1)
    return -torch.log(dist + eps).mean()
