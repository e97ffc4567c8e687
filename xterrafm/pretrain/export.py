"""Export of the pretrained teacher backbone in the published TerraFM state_dict layout."""

from __future__ import annotations

import os
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.weights import convert_weights

with import_gate():
    from torch import nn

__all__ = ["export_backbone"]


def export_backbone(backbone: nn.Module, path: str | os.PathLike) -> str:
    """Write ``backbone``'s state_dict (published keys + ``patch_embed.fusion.*``) as safetensors.

    Parameters
    ----------
    backbone : TerraFM
        Usually the teacher's backbone (the model DINO keeps).
    path : path-like
        Output ``.safetensors`` file, written atomically by :func:`xterrafm.convert_weights`.

    Returns
    -------
    str
        SHA-256 of the written tensors (what ``load_model(weights=path).weights_sha256`` reports).
    """
    state = {k: v.detach().float().cpu().contiguous() for k, v in backbone.state_dict().items()}
    config = getattr(backbone, "config", None)
    return convert_weights(state, Path(path), name=config, overwrite=True)
