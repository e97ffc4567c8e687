"""TerraFM model: configuration, transformer blocks, patch embedding and encoder."""

from xterrafm.models.config import CONFIGS, TerraFMConfig, get_config
from xterrafm.models.patch_embed import ModalityPatchEmbed, patchify
from xterrafm.models.pos_embed import resize_pos_embed
from xterrafm.models.terrafm import FUSION_PREFIX, PRECISIONS, TerraFM

__all__ = [
    "CONFIGS",
    "FUSION_PREFIX",
    "PRECISIONS",
    "ModalityPatchEmbed",
    "TerraFM",
    "TerraFMConfig",
    "get_config",
    "patchify",
    "resize_pos_embed",
]
