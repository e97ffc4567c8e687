"""TerraFM model: configuration, transformer blocks, patch embedding and encoder."""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "CONFIGS": "config",
    "FUSION_PREFIX": "terrafm",
    "ModalityPatchEmbed": "patch_embed",
    "PRECISIONS": "precision",
    "TerraFM": "terrafm",
    "TerraFMConfig": "config",
    "get_config": "config",
    "patchify": "patch_embed",
    "resize_pos_embed": "pos_embed",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
