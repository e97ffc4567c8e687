"""Position-embedding resizing, numerically matching the published TerraFM forward pass.

The checkpoint stores positions for a ``base x base`` (14 x 14) patch grid plus the CLS
position. For another grid (h, w) the patch positions are resized bicubically
(``align_corners=False``) with ``scale_factor = ((h + 0.1) / base, (w + 0.1) / base)``; the
scale factor (not the output size) drives the sampling, as in the published code. The CLS
position is kept as is.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import torch
    import torch.nn.functional as F
    from torch import Tensor

__all__ = ["resize_pos_embed"]


def resize_pos_embed(pos_embed: Tensor, grid: tuple[int, int], base_grid: int) -> Tensor:
    """Position embedding for a patch grid of ``grid = (h, w)`` patches.

    Parameters
    ----------
    pos_embed : Tensor
        Stored embedding (1, 1 + base_grid², D): CLS position first, then patches row-major.
    grid : tuple of int
        Target grid (h, w) in patches, i.e. (H / 16, W / 16).
    base_grid : int
        Side of the stored grid (14).

    Returns
    -------
    Tensor
        (1, 1 + h·w, D). The input itself when (h, w) equals the stored grid.
    """
    h, w = grid
    n = pos_embed.shape[1] - 1
    if n != base_grid * base_grid:
        raise ValueError(
            f"pos_embed holds {n} patch positions; expected {base_grid}x{base_grid}={base_grid**2}"
        )
    if (h, w) == (base_grid, base_grid):
        return pos_embed
    d = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    patch_pos = patch_pos.reshape(1, base_grid, base_grid, d).permute(0, 3, 1, 2)
    resized = F.interpolate(
        patch_pos.float(),
        scale_factor=((h + 0.1) / base_grid, (w + 0.1) / base_grid),
        mode="bicubic",
        align_corners=False,
    ).to(pos_embed.dtype)
    if resized.shape[-2:] != (h, w):  # pragma: no cover - guarded by the +0.1 offset
        raise RuntimeError(f"position grid resized to {tuple(resized.shape[-2:])}, not {(h, w)}")
    resized = resized.permute(0, 2, 3, 1).reshape(1, h * w, d)
    return torch.cat([cls_pos, resized], dim=1)
