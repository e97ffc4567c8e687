"""Pre-norm transformer blocks of the TerraFM encoder (DINO-style ViT).

Parameter names follow the published checkpoint: ``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``. Stochastic depth (:class:`DropPath`) has no parameters, so
it leaves the state_dict layout unchanged; it is off (rate 0) unless a trainer sets it
(:func:`set_drop_path`) and acts only in training mode.
"""

from __future__ import annotations

from collections.abc import Iterable

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError

with import_gate():
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn

__all__ = ["Attention", "Block", "DropPath", "Mlp", "init_vit_weights", "set_drop_path"]


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples with probability ``p``.

    In training mode each sample's branch output is zeroed with probability ``p`` and scaled
    by ``1 / (1 - p)`` otherwise; in eval mode (or with ``p = 0``) it is the identity.

    Parameters
    ----------
    p : float
        Drop probability in [0, 1).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    @property
    def p(self) -> float:
        """Drop probability."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise UsageError(f"drop-path probability must be in [0, 1), got {value}")
        self._p = float(value)

    def forward(self, x: Tensor) -> Tensor:
        """Branch output (B, ...) -> the same, with whole samples dropped in training."""
        if self._p == 0.0 or not self.training:
            return x
        keep = 1.0 - self._p
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self._p}"


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection.

    Parameters
    ----------
    dim : int
        Token width D.
    num_heads : int
        Number of heads; the scale is ``(D / num_heads) ** -0.5`` (SDPA's default).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, N, D) -> tokens (B, N, D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``fc1`` -> exact (erf) GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, N, D) -> tokens (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Parameters
    ----------
    dim : int
        Token width D.
    num_heads : int
        Attention heads.
    mlp_hidden : int
        MLP hidden width (4·D published).
    eps : float
        LayerNorm epsilon (1e-6 published).
    drop_path : float
        Stochastic-depth probability of both residual branches (0: off).
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, eps: float = 1e-6,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens (B, N, D) -> tokens (B, N, D)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def set_drop_path(blocks: Iterable[nn.Module], rate: float) -> list[float]:
    """Set stochastic depth over a stack of blocks, rising linearly to ``rate`` (DINO's rule).

    Block ``i`` of ``n`` gets ``rate * i / (n - 1)`` (the first block is never dropped).

    Parameters
    ----------
    blocks : iterable of Block
    rate : float
        Probability of the last block, in [0, 1).

    Returns
    -------
    list of float
        The probability set on each block.
    """
    blocks = list(blocks)
    n = len(blocks)
    rates = [rate * i / (n - 1) if n > 1 else rate for i in range(n)]
    for blk, r in zip(blocks, rates, strict=True):
        blk.drop_path.p = r
    return rates


def init_vit_weights(module: nn.Module) -> None:
    """DINO-style initialisation: truncated normal (std 0.02) linears, zero biases, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

