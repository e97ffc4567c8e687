"""The published TerraFM forward pass, as the published code computes it, for the peer benchmark.

Written from /work/shared/reference/terrafm_model.md (not from the published repository): the
unfolded patch embedding (stem convolution, ``proj1``, LayerNorm, ``proj2``, ``proj3``), and
attention computed explicitly (``softmax(q k^T / sqrt(d)) v`` as three tensor operations), in
float32. It works on a plain state_dict in the published layout, so it runs the same weights
as xterrafm. One difference from the published code, with no effect on speed: the stem is the
one of the named modality (the published ``forward`` picks the L1C stem for every 12-channel
input), so that its output can be compared with xterrafm's.

Imported by ``bench_peers.py`` as ``from published_model import published_forward``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["heads_of", "published_forward"]

#: Attention heads per width (the published variants and xterrafm's test config).
_HEADS = {768: 12, 1024: 16}


def heads_of(state: dict[str, Tensor], heads: int | None = None) -> int:
    """Attention heads of a state_dict: ``heads`` if given, else the published variant's."""
    dim = state["cls_token"].shape[-1]
    if heads is not None:
        return heads
    if dim not in _HEADS:
        raise ValueError(f"width {dim} is not a published variant; pass heads=")
    return _HEADS[dim]


def _pos(state: dict[str, Tensor], gh: int, gw: int) -> Tensor:
    pos = state["pos_embed"]
    cls, grid = pos[:, :1], pos[:, 1:]
    side = int(math.isqrt(grid.shape[1]))
    if (gh, gw) == (side, side):
        return pos
    dim = grid.shape[-1]
    grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side),
                         mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)], dim=1)


def _attention(x: Tensor, w: dict[str, Tensor], heads: int) -> Tensor:
    b, n, d = x.shape
    qkv = F.linear(x, w["qkv.weight"], w["qkv.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    attn = (q * (d // heads) ** -0.5) @ k.transpose(-2, -1)
    out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
    return F.linear(out, w["proj.weight"], w["proj.bias"])


def published_forward(state: dict[str, Tensor], x: Tensor, modality: str,
                      heads: int | None = None) -> Tensor:
    """CLS embeddings of normalised windows, computed as the published model does.

    Parameters
    ----------
    state : dict of str to Tensor
        A state_dict in the published layout (``blocks.N.attn.qkv.weight``, ...), float32.
    x : Tensor
        Normalised windows, shape ``(B, C, H, W)``, H and W multiples of 16.
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``: whose stem and modality vector are used.
    heads : int, optional
        Attention heads (default: the published variant of this width).

    Returns
    -------
    Tensor
        ``(B, D)``: the final-normed CLS token.
    """
    heads = heads_of(state, heads)
    pe = "patch_embed."
    t = F.conv2d(x, state[f"{pe}conv2d_{modality}.weight"], state[f"{pe}conv2d_{modality}.bias"],
                 stride=16)
    gh, gw = t.shape[-2:]
    t = t.flatten(2).transpose(1, 2) + state[f"{pe}{modality}_embed"]
    p = f"{pe}projection."
    t = F.linear(t, state[f"{p}proj1.weight"])
    t = F.layer_norm(t, t.shape[-1:], state[f"{p}norm_input.weight"],
                     state[f"{p}norm_input.bias"], eps=1e-5)
    t = F.linear(t, state[f"{p}proj2.weight"], state[f"{p}proj2.bias"])
    t = F.linear(t, state[f"{p}proj3.weight"], state[f"{p}proj3.bias"])
    cls = state["cls_token"].expand(t.shape[0], -1, -1)
    t = torch.cat([cls, t], dim=1) + _pos(state, gh, gw)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    d = t.shape[-1]
    for i in range(depth):
        w = {k[len(f"blocks.{i}."):]: v for k, v in state.items()
             if k.startswith(f"blocks.{i}.")}
        h = F.layer_norm(t, (d,), w["norm1.weight"], w["norm1.bias"], eps=1e-6)
        t = t + _attention(h, {k[5:]: v for k, v in w.items() if k.startswith("attn.")}, heads)
        h = F.layer_norm(t, (d,), w["norm2.weight"], w["norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, w["mlp.fc1.weight"], w["mlp.fc1.bias"]))
        t = t + F.linear(h, w["mlp.fc2.weight"], w["mlp.fc2.bias"])
    t = F.layer_norm(t, (d,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    return t[:, 0]
