"""The minibatch training loop shared by the linear and segmentation probes.

AdamW with decoupled weight decay, the learning rate decayed to zero along a cosine over all
steps, and each epoch's batches taken in the order of a permutation drawn from a
``torch.Generator`` seeded by ``seed``: the same data and seed give bit-identical parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from xterrafm._imports import import_gate

with import_gate():
    import torch

__all__ = ["train_adamw_cosine"]


def train_adamw_cosine(
    params: Sequence[torch.Tensor],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> None:
    """Minimise ``batch_loss`` over minibatches of ``n`` samples, updating ``params`` in place.

    Parameters
    ----------
    params : sequence of torch.Tensor
        Leaf tensors with ``requires_grad=True``.
    batch_loss : callable
        Maps the int64 sample indices of a batch, shape (B,), to a scalar loss tensor.
    n : int
        Number of training samples.
    epochs : int
        Passes over the samples.
    batch_size : int
        Samples per step (the last batch of an epoch may be smaller).
    lr : float
        Peak learning rate.
    weight_decay : float
        AdamW decoupled weight decay.
    seed : int
        Seed of the per-epoch shuffling.
    """
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * math.ceil(n / batch_size))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            opt.zero_grad()
            loss = batch_loss(perm[start : start + batch_size])
            loss.backward()
            opt.step()
            sched.step()
