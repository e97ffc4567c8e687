"""Step-indexed schedules: learning rate, weight decay, teacher momentum and temperature.

Every schedule is a pure function of the global step, so a resumed run reproduces them
exactly from the step counter alone.
"""

from __future__ import annotations

import math

__all__ = ["cosine_schedule", "linear_warmup_constant", "scaled_lr"]


def cosine_schedule(
    step: int,
    total_steps: int,
    start: float,
    end: float,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> float:
    """Linear warm-up from ``warmup_start`` to ``start``, then cosine decay to ``end``.

    Parameters
    ----------
    step : int
        Global optimisation step (0-based).
    total_steps : int
        Horizon of the schedule; steps past it return ``end``.
    start, end : float
        Values at the end of the warm-up and at ``total_steps``.
    warmup_steps : int
        Length of the linear warm-up.
    warmup_start : float
        Value at step 0 when there is a warm-up.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if step < warmup_steps:
        return warmup_start + (start - warmup_start) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def linear_warmup_constant(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear ramp from ``start`` to ``end`` over ``warmup_steps``, then constant ``end``.

    Used for DINO's teacher temperature (0.04 -> 0.07).
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps


def scaled_lr(base_lr: float, global_batch_size: int) -> float:
    """The linear scaling rule: ``base_lr · global_batch / 256``."""
    return base_lr * global_batch_size / 256.0
