"""Masked-token objective of iBOT / DINOv2: block masks and the patch-level distillation loss.

The student sees its global views with some patch tokens replaced by a learned mask token; the
teacher sees the same views whole. At every masked position the student's patch token, through
the (shared) DINO head, is asked to give the teacher's centred, sharpened distribution for the
token it cannot see. Unlike the CLS loss, which matches views that may keep different modality
subsets, this term compares a view with itself, so it never asks the encoder to give up what
only one of the view's modalities shows.
"""

from __future__ import annotations

import math

from xterrafm._imports import import_gate
from xterrafm.pretrain.diagnostics import teacher_entropies

with import_gate():
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn

__all__ = ["MaskedPatchLoss", "block_masks"]


def _one_mask(grid: tuple[int, int], target: int, min_block: int,
              gen: torch.Generator) -> torch.Tensor:
    h, w = grid
    mask = torch.zeros(h, w, dtype=torch.bool)
    count = 0
    for _ in range(50):  # rectangles of random area and aspect until the target is reached
        left = target - count
        if left <= 0:
            break
        area = float(torch.empty(()).uniform_(min(min_block, left), left, generator=gen))
        aspect = math.exp(float(torch.empty(()).uniform_(math.log(0.3), math.log(1 / 0.3), generator=gen)))
        bh = max(1, min(h, round(math.sqrt(area * aspect))))
        bw = max(1, min(w, round(math.sqrt(area / aspect))))
        top = int(torch.randint(0, h - bh + 1, (), generator=gen))
        lft = int(torch.randint(0, w - bw + 1, (), generator=gen))
        block = mask[top:top + bh, lft:lft + bw]
        new = int((~block).sum())
        if 0 < new <= left:
            block.fill_(True)
            count += new
    if count < target:  # top up with single tokens (tiny grids leave few rectangles that fit)
        free = torch.nonzero(~mask.flatten()).flatten()
        pick = free[torch.randperm(free.numel(), generator=gen)[: target - count]]
        mask.view(-1)[pick] = True
    return mask.flatten()


def block_masks(n_rows: int, grid: tuple[int, int], probability: float,
                ratio: tuple[float, float] | list[float], generator: torch.Generator,
                min_block: int = 4) -> torch.Tensor:
    """Block-wise token masks for ``n_rows`` views on a ``grid`` of patches.

    Each row is masked with probability ``probability``; a masked row gets
    ``round(r · h · w)`` masked tokens (at least 1), ``r`` uniform in ``ratio``, as rectangles
    of random area and aspect ratio (0.3–3.3), topped up with single tokens when no rectangle
    fits.

    Parameters
    ----------
    n_rows : int
        Number of views (rows of the stacked global views).
    grid : (int, int)
        Patch grid (h, w) of a view.
    probability : float
        Fraction of rows that get a mask, in [0, 1].
    ratio : (float, float)
        Range of the fraction of a masked row's tokens that are masked, 0 < low <= high < 1.
    generator : torch.Generator
        Source of every draw (the trainer seeds one per step and rank, so that a resumed run
        draws the same masks).
    min_block : int
        Smallest rectangle area tried, in tokens.

    Returns
    -------
    Tensor, bool, shape (n_rows, h * w)
        True where the student's token is replaced by the mask token (row-major patch order).
    """
    h, w = grid
    n_tokens = h * w
    masks = torch.zeros(n_rows, n_tokens, dtype=torch.bool)
    chosen = torch.rand(n_rows, generator=generator) < probability
    for row in torch.nonzero(chosen).flatten().tolist():
        r = float(torch.empty(()).uniform_(float(ratio[0]), float(ratio[1]), generator=generator))
        target = min(n_tokens - 1, max(1, round(r * n_tokens)))
        masks[row] = _one_mask(grid, target, min_block, generator)
    return masks


class MaskedPatchLoss(nn.Module):
    """Cross-entropy between teacher and student patch distributions at masked positions.

    Parameters
    ----------
    out_dim : int
        Number of prototypes K of the head.
    student_temp : float
        Student temperature (0.1).
    center_momentum : float
        EMA momentum of the patch centre (0.9), a centre of its own (iBOT).

    Notes
    -----
    A row's masked tokens share its weight equally, and the loss is the mean over the rows that
    have a mask, so that a row counts the same however many of its tokens are masked.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1,
                 center_momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}")
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.last_teacher_entropy = float("nan")
        self.last_teacher_marginal_entropy = float("nan")

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                masks: torch.Tensor, teacher_temp: float, update_center: bool = True
                ) -> torch.Tensor:
        """Loss of one step; updates the centre afterwards.

        Parameters
        ----------
        student_logits, teacher_logits : Tensor, shape (n_masked, K)
            Head logits at the masked positions, in the row-major order of ``masks``.
        masks : bool Tensor, shape (n_rows, n_tokens)
            The masks the student saw (:func:`block_masks`).
        teacher_temp : float
            Teacher temperature of this step.
        update_center : bool
            Update the centre with this step's teacher logits.

        Returns
        -------
        Tensor
            Scalar loss (0 when no row is masked).
        """
        n_masked = int(masks.sum())
        if student_logits.shape[0] != n_masked or teacher_logits.shape[0] != n_masked:
            raise ValueError(f"{n_masked} masked tokens but logits of "
                             f"{student_logits.shape[0]} / {teacher_logits.shape[0]} rows")
        t = teacher_logits.detach().float()
        probs = F.softmax((t - self.center) / teacher_temp, dim=-1)
        if n_masked:
            self.last_teacher_entropy, self.last_teacher_marginal_entropy = teacher_entropies(probs)
        log_s = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)
        per_row = masks.sum(dim=1)
        token_weight = (1.0 / per_row.clamp_min(1).float())[:, None].expand_as(masks)[masks]
        n_rows = int((per_row > 0).sum())
        loss = (torch.sum(-probs * log_s, dim=-1) * token_weight.to(log_s.device)).sum()
        loss = loss / max(n_rows, 1)
        if update_center:
            self.update_center(t)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the mean teacher logit over masked tokens, all-reduced across DDP ranks."""
        stats = torch.cat([teacher_logits.sum(dim=0),
                           torch.tensor([float(teacher_logits.shape[0])],
                                        device=teacher_logits.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        if float(stats[-1]) == 0:
            return
        m = self.center_momentum
        self.center.mul_(m).add_((stats[:-1] / stats[-1])[None], alpha=1 - m)
