"""Self-supervised pretraining of TerraFM (DINO with dual centering) from chunked cubes.

Run it with ``python -m xterrafm.pretrain --config tiny``; see ``docs/pretraining.md``.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "DINOHead": "head",
    "DualCenteringDINOLoss": "loss",
    "MaskedPatchLoss": "ibot",
    "MultiViewModel": "multiview",
    "PretrainConfig": "config",
    "TrainResult": "trainer",
    "apply_overrides": "config",
    "block_masks": "ibot",
    "build_dataset": "trainer",
    "build_models": "trainer",
    "cosine_schedule": "schedules",
    "export_backbone": "export",
    "inverse_frequency_weights": "loss",
    "linear_warmup_constant": "schedules",
    "load_checkpoint": "checkpoint",
    "load_config": "config",
    "save_checkpoint": "checkpoint",
    "scaled_lr": "schedules",
    "shipped_configs": "config",
    "train": "trainer",
    "update_teacher": "ema",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
