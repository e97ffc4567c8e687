"""Self-supervised pretraining of TerraFM (DINO with dual centering) from chunked cubes.

Run it with ``python -m xterrafm.pretrain --config tiny``; see ``docs/pretraining.md``.
"""

from xterrafm.pretrain.checkpoint import load_checkpoint, save_checkpoint
from xterrafm.pretrain.config import PretrainConfig, apply_overrides, load_config, shipped_configs
from xterrafm.pretrain.ema import update_teacher
from xterrafm.pretrain.export import export_backbone
from xterrafm.pretrain.head import DINOHead
from xterrafm.pretrain.loss import DualCenteringDINOLoss, inverse_frequency_weights
from xterrafm.pretrain.multiview import MultiViewModel
from xterrafm.pretrain.schedules import cosine_schedule, linear_warmup_constant, scaled_lr
from xterrafm.pretrain.trainer import TrainResult, build_dataset, build_models, train

__all__ = [
    "DINOHead",
    "DualCenteringDINOLoss",
    "MultiViewModel",
    "PretrainConfig",
    "TrainResult",
    "apply_overrides",
    "build_dataset",
    "build_models",
    "cosine_schedule",
    "export_backbone",
    "inverse_frequency_weights",
    "linear_warmup_constant",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "scaled_lr",
    "shipped_configs",
    "train",
    "update_teacher",
]
