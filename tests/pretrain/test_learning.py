"""Evidence that pretraining learns (short version; the long run is in docs/pretraining.md)."""

from __future__ import annotations

import numpy as np

from xterrafm.pretrain import load_config, train

#: Short-run settings (as in the documented tiny run): faster teacher and slower centering.
SHORT_RUN = {
    "base_lr": 0.03, "momentum_teacher": 0.99, "teacher_temp": 0.04,
    "warmup_teacher_temp": 0.04, "center_momentum": 0.99, "total_steps": 30,
}


def test_loss_falls_over_the_first_steps(pretrain_cube, tmp_path, fast_overrides):
    fast_overrides.update(SHORT_RUN, max_steps=30, checkpoint_every=30)
    result = train(load_config("tiny", fast_overrides), [pretrain_cube], tmp_path / "run")
    losses = np.asarray(result.losses)
    assert losses.shape == (30,) and np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.8 * losses[:5].mean(), np.round(losses, 3)
