"""Architecture hyper-parameters of the TerraFM variants.

The published variants (``terrafm-b``, ``terrafm-l``) follow
``shared/reference/terrafm_model.md``; ``terrafm-tiny`` is a small test/example configuration
with the same structure (and the same 14 x 14 base position grid), and ``terrafm-tiny-p8`` the
same encoder on 8 px patches: the encoder of the ``tiny`` pretraining recipe, whose 32-64 px
windows give it 4 x 4 to 8 x 8 tokens instead of 2 x 2 to 4 x 4 (docs/pretraining.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xterrafm.bands import MODALITIES

__all__ = ["CONFIGS", "TerraFMConfig", "get_config", "spread_layers"]


def spread_layers(depth: int, n: int = 4) -> tuple[int, ...]:
    """``n`` block indices (0-based) evenly spread over ``depth`` blocks, ending with the last.

    ``depth=24`` gives ``(5, 11, 17, 23)``; ``depth=4`` gives ``(0, 1, 2, 3)``.
    """
    n = min(n, depth)
    return tuple(sorted({round((i + 1) * depth / n) - 1 for i in range(n)}))


@dataclass(frozen=True)
class TerraFMConfig:
    """Hyper-parameters of a TerraFM encoder.

    Attributes
    ----------
    name : str
        Variant name (``"terrafm-b"``).
    embed_dim : int
        Token width D.
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads per block (``embed_dim`` must be divisible by it).
    patch_size : int
        Side of the square patches in pixels (16 for every published variant,
        8 for ``terrafm-tiny-p8``).
    stem_dim : int
        Width of the modality stems and the shared token projection (3·D published).
    mlp_ratio : float
        MLP hidden width as a multiple of D.
    base_grid : int
        Side of the patch grid the position embedding is stored for (14 = 224 px / 16).
    modalities : tuple of str
        Modalities with a stem, in the published parameter order.
    in_channels : dict
        Input channels per modality (from :mod:`xterrafm.bands`).
    dense_layers : tuple of int
        Default 0-based block indices returned by ``TerraFM.intermediate``.
    fusion_queries : int
        Size of the learned query bank of the multi-modal fusion (not in the checkpoint).
    norm_input_eps, norm_eps : float
        LayerNorm epsilons of the token projection (1e-5) and of the blocks/final norm (1e-6).
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    stem_dim: int = 0
    mlp_ratio: float = 4.0
    base_grid: int = 14
    modalities: tuple[str, ...] = ("s2_l2a", "s2_l1c", "s1")
    in_channels: dict[str, int] = field(default_factory=dict, hash=False)
    dense_layers: tuple[int, ...] = ()
    fusion_queries: int = 4
    norm_input_eps: float = 1e-5
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.stem_dim == 0:
            object.__setattr__(self, "stem_dim", 3 * self.embed_dim)
        if not self.in_channels:
            chans = {m: MODALITIES[m].n_bands for m in self.modalities}
            object.__setattr__(self, "in_channels", chans)
        if not self.dense_layers:
            object.__setattr__(self, "dense_layers", spread_layers(self.depth))
        bad = [i for i in self.dense_layers if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"dense_layers {bad} outside 0..{self.depth - 1}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the block MLPs."""
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def base_tokens(self) -> int:
        """Number of patch positions of the stored position embedding (196)."""
        return self.base_grid * self.base_grid

    def to_dict(self) -> dict:
        """Plain-JSON description (for provenance attributes)."""
        return {
            "name": self.name, "embed_dim": self.embed_dim, "depth": self.depth,
            "num_heads": self.num_heads, "patch_size": self.patch_size,
            "stem_dim": self.stem_dim, "mlp_ratio": self.mlp_ratio,
            "base_grid": self.base_grid, "modalities": list(self.modalities),
            "dense_layers": list(self.dense_layers), "fusion_queries": self.fusion_queries,
        }


CONFIGS: dict[str, TerraFMConfig] = {
    "terrafm-b": TerraFMConfig(
        name="terrafm-b", embed_dim=768, depth=12, num_heads=12, dense_layers=(3, 5, 7, 11)
    ),
    "terrafm-l": TerraFMConfig(name="terrafm-l", embed_dim=1024, depth=24, num_heads=16),
    "terrafm-tiny": TerraFMConfig(name="terrafm-tiny", embed_dim=32, depth=4, num_heads=2),
    "terrafm-tiny-p8": TerraFMConfig(name="terrafm-tiny-p8", embed_dim=32, depth=4, num_heads=2,
                                     patch_size=8),
}


def get_config(name: str | TerraFMConfig, **overrides) -> TerraFMConfig:
    """The configuration of a named variant, optionally with fields replaced.

    Parameters
    ----------
    name : str or TerraFMConfig
        ``"terrafm-b"``, ``"terrafm-l"``, ``"terrafm-tiny"`` or ``"terrafm-tiny-p8"``
        (case-insensitive; ``"b"``, ``"l"``, ``"tiny"``, ``"tiny-p8"`` accepted), or a config,
        returned as is.
    **overrides
        Fields to replace (e.g. ``fusion_queries=8``).
    """
    if isinstance(name, TerraFMConfig):
        return replace(name, **overrides) if overrides else name
    key = str(name).strip().lower()
    if key not in CONFIGS and f"terrafm-{key}" in CONFIGS:
        key = f"terrafm-{key}"
    if key not in CONFIGS:
        raise ValueError(f"unknown TerraFM variant {name!r}; expected one of {list(CONFIGS)}")
    cfg = CONFIGS[key]
    if "depth" in overrides and "dense_layers" not in overrides:
        overrides["dense_layers"] = ()
    return replace(cfg, **overrides) if overrides else cfg
