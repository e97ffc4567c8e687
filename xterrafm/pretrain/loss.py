"""DINO loss with dual centering of the teacher logits.

Dual centering (our reading; the paper's equations are not published): the teacher logits
are centred by ``c = λ·c_batch + (1-λ)·c_class`` before sharpening, where

- ``c_batch`` is DINO's center: an EMA of the mean teacher logit vector over the batch;
- ``c_class`` is a class-frequency-aware center: an EMA of the weighted mean of the teacher
  logits, each sample weighted by the inverse frequency of its tile's land cover *among the
  samples drawn*, ``w_i = Σ_c p_i(c) · q_c^(-β)`` with ``p_i`` the tile's class proportions,
  ``q_c`` the class frequencies of what the sampler draws
  (:func:`xterrafm.data.sampling.sampled_class_frequencies`) and ``β`` (``center_alpha``,
  default 1) the exponent. With ``β = 1`` the class center is the class-balanced mean of the
  teacher logits whatever the sampler does: it corrects only what the land-cover-aware
  sampling has not already corrected (weighting by the scene's frequencies ``f_c`` instead
  would compound the two, giving rare classes about ``f_c^(-α-β)``, past balanced).

With ``λ = 1`` the loss and the center update are exactly DINO's.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn

from xterrafm.pretrain.diagnostics import teacher_entropies
from xterrafm.pretrain.sinkhorn import sinkhorn_knopp

__all__ = ["DualCenteringDINOLoss", "inverse_frequency_weights"]


def inverse_frequency_weights(
    class_proportions: torch.Tensor, class_frequencies: torch.Tensor, exponent: float = 1.0
) -> torch.Tensor:
    """Per-sample weights ``w_i = Σ_c p_i(c) · f_c^(-exponent)``.

    Parameters
    ----------
    class_proportions : Tensor, shape (B, n_classes)
        Land-cover class proportions of each sample's tile (rows sum to 1, or 0 if unlabelled).
    class_frequencies : Tensor, shape (n_classes,)
        Class frequencies (sum to 1) to correct for: the trainer passes those of the samples
        drawn, ``q_c``. Classes with frequency 0 get weight 0.
    exponent : float
        Exponent ``β`` of the inverse frequency.

    Returns
    -------
    Tensor, shape (B,)
        Non-negative weights; a sample without labelled pixels gets weight 1 (neutral).
    """
    f = class_frequencies.to(torch.float64)
    inv = torch.where(f > 0, f.clamp_min(1e-12) ** (-exponent), torch.zeros_like(f))
    p = class_proportions.to(torch.float64)
    w = p @ inv
    labelled = p.sum(dim=1) > 0
    return torch.where(labelled, w, torch.ones_like(w)).to(torch.float32)


class DualCenteringDINOLoss(nn.Module):
    """Cross-entropy between sharpened, centred teacher and student distributions.

    Parameters
    ----------
    out_dim : int
        Number of prototypes K.
    n_global_views : int
        Number of global views (the teacher sees only these), default 2.
    student_temp : float
        Student temperature (0.1).
    center_momentum : float
        EMA momentum of both centers (0.9).
    lam : float
        Weight λ of the batch center; ``1 - λ`` goes to the class-frequency-aware center.
        ``λ = 1`` is DINO.
    centering : {"ema", "sinkhorn"}
        ``"ema"``: the dual EMA centers above. ``"sinkhorn"``: Sinkhorn-Knopp equipartition
        of the teacher assignments (:func:`xterrafm.pretrain.sinkhorn.sinkhorn_knopp`, as
        DINOv2) with per-sample masses ``λ·(1/N) + (1-λ)·w_i/Σw`` — ``λ = 1`` is DINOv2's
        uniform equipartition, smaller λ shares the prototypes out between land-cover classes.
        The EMA centers are still updated (and saved) but not used.
    sinkhorn_iterations : int
        Alternating normalisations of the Sinkhorn-Knopp centering (3).

    Notes
    -----
    Views are stacked view-major: rows ``v*B:(v+1)*B`` of the logits hold view ``v`` of the
    ``B`` samples. The loss averages the cross-entropy over the ``B`` samples and over all
    (teacher view ``i``, student view ``v``) pairs with ``v != i``.
    """

    def __init__(
        self,
        out_dim: int,
        n_global_views: int = 2,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        lam: float = 0.5,
        centering: str = "ema",
        sinkhorn_iterations: int = 3,
    ) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam (λ) must be in [0, 1], got {lam}")
        if centering not in ("ema", "sinkhorn"):
            raise ValueError(f"centering must be 'ema' or 'sinkhorn', got {centering!r}")
        self.centering = centering
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.n_global_views = n_global_views
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.lam = lam
        self.register_buffer("center_batch", torch.zeros(1, out_dim))
        self.register_buffer("center_class", torch.zeros(1, out_dim))
        self.last_teacher_entropy = float("nan")
        self.last_teacher_marginal_entropy = float("nan")

    @property
    def center(self) -> torch.Tensor:
        """The combined center ``λ·c_batch + (1-λ)·c_class``, shape (1, K)."""
        return self.lam * self.center_batch + (1.0 - self.lam) * self.center_class

    def teacher_probabilities(self, teacher_logits: torch.Tensor, teacher_temp: float,
                              sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Centred, sharpened teacher distributions, shape like ``teacher_logits``.

        ``sample_weights`` (B,) matter only for the Sinkhorn-Knopp centering with λ < 1.
        """
        if self.centering == "ema":
            return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)
        n = teacher_logits.shape[0]
        mass = torch.full((n,), 1.0 / n, device=teacher_logits.device)
        if self.lam < 1.0 and sample_weights is not None:
            w = sample_weights.to(device=mass.device, dtype=torch.float32).repeat(
                n // sample_weights.shape[0])
            mass = self.lam * mass + (1.0 - self.lam) * w / w.sum().clamp_min(1e-12)
        return sinkhorn_knopp(teacher_logits, teacher_temp, mass, self.sinkhorn_iterations)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_temp: float,
        sample_weights: torch.Tensor | None = None,
        update_center: bool = True,
    ) -> torch.Tensor:
        """Loss of one step; updates the centers afterwards (as DINO does).

        Parameters
        ----------
        student_logits : Tensor, shape (V*B, K)
            Student logits for all V views.
        teacher_logits : Tensor, shape (G*B, K)
            Teacher logits for the G global views.
        teacher_temp : float
            Teacher temperature of this step.
        sample_weights : Tensor, shape (B,), optional
            Inverse-frequency weight of each sample's tile for the class center
            (see :func:`inverse_frequency_weights`); uniform when omitted.
        update_center : bool
            Update both centers with this batch's teacher logits.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        g = self.n_global_views
        if teacher_logits.shape[0] % g:
            raise ValueError(
                f"teacher_logits has {teacher_logits.shape[0]} rows, not a multiple of "
                f"n_global_views={g}"
            )
        b = teacher_logits.shape[0] // g
        if student_logits.shape[0] % b:
            raise ValueError("student_logits rows must be a multiple of the batch size")
        n_views = student_logits.shape[0] // b
        probs = self.teacher_probabilities(teacher_logits.detach(), teacher_temp, sample_weights)
        # logged to watch for collapse to uniform (ln K) or onto one prototype (both near 0)
        self.last_teacher_entropy, self.last_teacher_marginal_entropy = teacher_entropies(probs)
        t = probs.chunk(g)
        s = F.log_softmax(student_logits.float() / self.student_temp, dim=-1).chunk(n_views)
        total = student_logits.new_zeros((), dtype=torch.float32)
        n_terms = 0
        for i, ti in enumerate(t):
            for v, sv in enumerate(s):
                if v == i:
                    continue
                total = total + torch.sum(-ti * sv, dim=-1).mean()
                n_terms += 1
        if n_terms == 0:
            raise ValueError("the loss needs at least two views")
        loss = total / n_terms
        if update_center:
            self.update_center(teacher_logits.detach(), sample_weights)
        return loss

    @torch.no_grad()
    def update_center(
        self, teacher_logits: torch.Tensor, sample_weights: torch.Tensor | None = None
    ) -> None:
        """EMA update of both centers, all-reduced across DDP ranks when initialised.

        Parameters
        ----------
        teacher_logits : Tensor, shape (G*B, K)
        sample_weights : Tensor, shape (B,), optional
        """
        t = teacher_logits.float()
        g = self.n_global_views
        b = t.shape[0] // g
        if sample_weights is None:
            w = torch.ones(b, device=t.device)
        else:
            w = sample_weights.to(device=t.device, dtype=torch.float32).reshape(b)
        w = w.repeat(g)
        stats = torch.cat(
            [
                t.sum(dim=0),
                (w[:, None] * t).sum(dim=0),
                torch.stack([torch.tensor(float(t.shape[0]), device=t.device), w.sum()]),
            ]
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        k = t.shape[1]
        batch_mean = stats[:k] / stats[2 * k]
        class_mean = stats[k : 2 * k] / stats[2 * k + 1].clamp_min(1e-12)
        m = self.center_momentum
        self.center_batch.mul_(m).add_(batch_mean[None], alpha=1 - m)
        self.center_class.mul_(m).add_(class_mean[None], alpha=1 - m)
