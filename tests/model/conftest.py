"""Fixtures of the model tests: tiny models, the published layout, reference forward pass."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F


def read_layout(tsv: Path, variant: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of one variant from the published layout TSV."""
    out = {}
    for line in tsv.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        var, key, shape = line.split("\t")
        if var == variant:
            out[key] = tuple(int(s) for s in shape.split("x"))
    return out


@pytest.fixture(scope="session")
def layout_b(reference_tsv: Path) -> dict[str, tuple[int, ...]]:
    return read_layout(reference_tsv, "terrafm-b")


@pytest.fixture(scope="session")
def layout_l(reference_tsv: Path) -> dict[str, tuple[int, ...]]:
    return read_layout(reference_tsv, "terrafm-l")


@pytest.fixture()
def tiny():
    """A randomly initialised terrafm-tiny in train mode (unfolded path)."""
    from xterrafm.models import TerraFM

    torch.manual_seed(0)
    return TerraFM("terrafm-tiny")


def reference_forward(model, x: torch.Tensor, modality: str) -> torch.Tensor:
    """The published forward pass written out from the reference text, op by op.

    Uses a real ``conv2d`` stem, explicit softmax attention and explicit position-embedding
    interpolation; returns all final-normed tokens (B, 1 + N, D).
    """
    sd = model.state_dict()
    cfg = model.config
    p, d = cfg.patch_size, cfg.embed_dim
    pe = "patch_embed."
    t = F.conv2d(x, sd[f"{pe}conv2d_{modality}.weight"], sd[f"{pe}conv2d_{modality}.bias"],
                 stride=p)
    b, _, h, w = t.shape
    t = t.flatten(2).transpose(1, 2) + sd[f"{pe}{modality}_embed"]
    pr = f"{pe}projection."
    t = t @ sd[f"{pr}proj1.weight"].T
    t = F.layer_norm(t, (t.shape[-1],), sd[f"{pr}norm_input.weight"], sd[f"{pr}norm_input.bias"],
                     eps=1e-5)
    t = t @ sd[f"{pr}proj2.weight"].T + sd[f"{pr}proj2.bias"]
    t = t @ sd[f"{pr}proj3.weight"].T + sd[f"{pr}proj3.bias"]
    pos = sd["pos_embed"]
    if (h, w) != (14, 14):
        grid = pos[:, 1:].reshape(1, 14, 14, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / 14, (w + 0.1) / 14),
                             mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, d)], dim=1)
    z = torch.cat([sd["cls_token"].expand(b, -1, -1), t], dim=1) + pos
    heads = cfg.num_heads
    for i in range(cfg.depth):
        k = f"blocks.{i}."
        y = F.layer_norm(z, (d,), sd[k + "norm1.weight"], sd[k + "norm1.bias"], eps=1e-6)
        qkv = (y @ sd[k + "attn.qkv.weight"].T + sd[k + "attn.qkv.bias"])
        qkv = qkv.reshape(b, -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, kk, v = qkv[0], qkv[1], qkv[2]
        att = (q @ kk.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(b, -1, d)
        z = z + a @ sd[k + "attn.proj.weight"].T + sd[k + "attn.proj.bias"]
        y = F.layer_norm(z, (d,), sd[k + "norm2.weight"], sd[k + "norm2.bias"], eps=1e-6)
        y = F.gelu(y @ sd[k + "mlp.fc1.weight"].T + sd[k + "mlp.fc1.bias"])
        z = z + y @ sd[k + "mlp.fc2.weight"].T + sd[k + "mlp.fc2.bias"]
    return F.layer_norm(z, (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)


@pytest.fixture(scope="session")
def reference():
    """The op-by-op reference forward pass (function)."""
    return reference_forward
