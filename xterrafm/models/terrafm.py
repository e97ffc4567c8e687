"""The TerraFM encoder: weight-compatible with the published checkpoints.

``TerraFM(config).state_dict()`` holds exactly the published names and shapes
(``shared/reference/terrafm_state_dict.tsv``) plus the fusion parameters under
``patch_embed.fusion.*``, which the published checkpoint lacks.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence

from xterrafm._imports import import_gate
from xterrafm.bands import check_modality
from xterrafm.models.config import TerraFMConfig, get_config
from xterrafm.models.patch_embed import ModalityPatchEmbed, _FoldCache
from xterrafm.models.pos_embed import resize_pos_embed
from xterrafm.models.precision import canonical_precision
from xterrafm.models.vit import Block, init_vit_weights

with import_gate():
    import torch
    from torch import Tensor, nn

__all__ = ["AUTOCAST_DTYPES", "FUSION_PREFIX", "TerraFM"]

#: State-dict prefix of the parameters that are not in the published checkpoint.
FUSION_PREFIX = "patch_embed.fusion."

#: Autocast dtype of each precision (None: plain float32).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16,
}


class TerraFM(nn.Module):
    """TerraFM ViT encoder with modality-specific patch stems.

    Parameters
    ----------
    config : TerraFMConfig or str
        Architecture, or a variant name for :func:`~xterrafm.models.get_config`
        (``"terrafm-b"``, ``"terrafm-l"``, ``"terrafm-tiny"``).

    Attributes
    ----------
    use_folded : bool
        Use the folded patch embedding when the module is in eval mode and no gradient into
        the patch embedding is needed (default True). Results equal the published computation
        up to float rounding.
    precision : str
        ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: autocast dtype of the forward pass
        (outputs are returned as float32). bf16 pays on CUDA and on CPUs with AMX-BF16, or
        AVX512-BF16 from AMD (:mod:`xterrafm.models.cpu_bf16`); on other CPUs it is slower.

    Notes
    -----
    Inputs are images (B, C, H, W) of one modality with H, W multiples of 16, already
    normalised (see :func:`xterrafm.normalize`); the modality is always named explicitly.
    Weights are randomly initialised; use :func:`xterrafm.load_model` for published weights.
    """

    def __init__(self, config: TerraFMConfig | str = "terrafm-b") -> None:
        super().__init__()
        cfg = get_config(config)
        self.config = cfg
        d = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.base_tokens, d))
        self.patch_embed = ModalityPatchEmbed(cfg)
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_hidden, eps=cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.use_folded = True
        #: SHA-256 of the weights and where they came from (set by ``xterrafm.load_model``).
        self.weights_sha256: str | None = None
        self.weights_source: str | None = None
        self._precision = "fp32"
        self._pos_cache = _FoldCache()
        self.reset_parameters()

    # -- properties ----------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        """Token / embedding width D."""
        return self.config.embed_dim

    @property
    def patch_size(self) -> int:
        """Patch side in pixels (16)."""
        return self.config.patch_size

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities this model has stems for."""
        return tuple(self.config.modalities)

    @property
    def precision(self) -> str:
        """Autocast precision of the forward pass: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        key = canonical_precision(value)
        if key not in AUTOCAST_DTYPES:
            raise ValueError(f"a model runs at 'fp32', 'bf16' or 'fp16', not {value!r} (resolve "
                             "'auto' with xterrafm.models.precision.resolve_precision)")
        self._precision = key

    # -- set-up --------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Random initialisation (DINO style: truncated normal, std 0.02)."""
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modalities:
            nn.init.trunc_normal_(self.patch_embed.modality_vector(m), std=0.02)
            self.patch_embed.stem_conv(m).reset_parameters()
        nn.init.trunc_normal_(self.patch_embed.fusion.queries, std=0.02)

    def train(self, mode: bool = True) -> TerraFM:
        """Set training mode; drops the folded inference caches."""
        self.patch_embed.clear_folds()
        self._pos_cache.clear()
        return super().train(mode)

    def prepare(self, modality: str, image_size: int | tuple[int, int] | None = None) -> None:
        """Build the cached inference maps for ``modality`` ahead of the first forward pass.

        In eval mode the first forward pass of a modality folds the patch-embedding maps and,
        for a new image size, resizes the position embedding (about half a second for ViT-B on
        one core). Calling this once after loading moves that cost off the first batch; Dask workers
        do it while their first blocks are read. Without effect in training mode.

        Parameters
        ----------
        modality : str
            Modality to prepare (aliases accepted).
        image_size : int or (int, int), optional
            Input height and width in pixels (multiples of the patch size) whose position
            embedding to prepare as well.
        """
        mod = check_modality(modality)
        if mod not in self.config.modalities:
            raise ValueError(
                f"this model has no stem for modality {mod!r}; known: {list(self.modalities)}")
        with torch.no_grad():  # the state of the forward passes the caches serve
            if not self._use_fast_path():
                return
            self.patch_embed.prepare_folds(mod)
            if image_size is not None:
                h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
                self._pos_embed_for((h // self.patch_size, w // self.patch_size), fast=True)

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True,
                        assign: bool = False):
        """Load parameters; the fusion keys (``patch_embed.fusion.*``) may be absent.

        The published checkpoint has no fusion parameters, so a ``strict=True`` load of it
        succeeds: absent fusion keys keep their current values, a warning says so, and they
        are listed in the returned ``missing_keys``. Every other key is checked as usual.
        """
        own = self.state_dict()
        absent = [k for k in own if k.startswith(FUSION_PREFIX) and k not in state_dict]
        if absent:
            state_dict = {**state_dict, **{k: own[k] for k in absent}}
            warnings.warn(
                f"state_dict has no fusion parameters ({', '.join(absent)}); they keep their "
                "current (freshly initialised) values. Expected for the published TerraFM "
                "checkpoint; it only affects forward_fused with several modalities.",
                UserWarning,
                stacklevel=2,
            )
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.patch_embed.clear_folds()
        self._pos_cache.clear()
        return result._replace(missing_keys=absent + list(result.missing_keys))

    def _use_fast_path(self) -> bool:
        if self.training or not self.use_folded:
            return False
        if not torch.is_grad_enabled():
            return True
        # the folded maps and the cached positions carry no gradient
        return not self.pos_embed.requires_grad and not any(
            p.requires_grad for p in self.patch_embed.parameters())

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES[self._precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    # -- input checks --------------------------------------------------------------------
    def _check_input(self, x: Tensor, modality: str) -> str:
        mod = check_modality(modality)
        if mod not in self.config.modalities:
            raise ValueError(
                f"this model has no stem for modality {mod!r}; known: {list(self.modalities)}"
            )
        if not isinstance(x, Tensor):
            raise ValueError(f"expected a torch.Tensor (B, C, H, W); got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(
                f"expected a 4-D tensor (B, C, H, W) for modality {mod!r}; got shape "
                f"{tuple(x.shape)}"
            )
        want = self.config.in_channels[mod]
        if x.shape[1] != want:
            raise ValueError(
                f"modality {mod!r} expects {want} channels on axis 1; got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        p = self.patch_size
        h, w = x.shape[-2:]
        if h == 0 or w == 0 or h % p or w % p:
            raise ValueError(
                f"height and width must be positive multiples of {p}; got {h} x {w}"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point tensor; got dtype {x.dtype}")
        return mod

    def _check_multi(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if not isinstance(inputs, Mapping) or not inputs:
            raise ValueError("expected a non-empty mapping {modality: images (B, C, H, W)}")
        out: dict[str, Tensor] = {}
        for name, x in inputs.items():
            mod = self._check_input(x, name)
            if mod in out:
                raise ValueError(f"modality {mod!r} given twice (as {name!r})")
            out[mod] = x
        shapes = {m: (x.shape[0], *x.shape[-2:]) for m, x in out.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"all modalities need the same batch, height and width; got {shapes}")
        return out

    # -- encoder -------------------------------------------------------------------------
    def _pos_embed_for(self, grid: tuple[int, int], fast: bool) -> Tensor:
        base = self.config.base_grid
        if not fast:
            return resize_pos_embed(self.pos_embed, grid, base)
        return self._pos_cache.get(  # type: ignore[return-value]
            f"pos:{grid}", (self.pos_embed,),
            lambda: resize_pos_embed(self.pos_embed, grid, base).detach(),
        )

    def _encode(self, tokens: Tensor, grid: tuple[int, int], fast: bool,
                collect: Sequence[int] = (), stop: int | None = None) -> tuple[Tensor, list]:
        """Add CLS and positions, run blocks; return last tokens and those after ``collect``."""
        b = tokens.shape[0]
        pos = self._pos_embed_for(grid, fast)
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls.to(tokens.dtype), tokens + pos[:, 1:]], dim=1)
        wanted = set(collect)
        kept: dict[int, Tensor] = {}
        last = len(self.blocks) - 1 if stop is None else stop
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in wanted:
                kept[i] = x
            if i >= last:
                break
        return x, [kept[i] for i in collect]

    def _to_grid(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """Patch tokens (B, 1 + N, D) -> (B, D, h, w) float32."""
        b, _, d = tokens.shape
        patch = tokens[:, 1:].reshape(b, grid[0], grid[1], d)
        return patch.permute(0, 3, 1, 2).float().contiguous()

    def _grid(self, x: Tensor) -> tuple[int, int]:
        return x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size

    def patch_tokens(self, x: Tensor, modality: str) -> Tensor:
        """Embedded patch tokens (B, N, D) of one modality, before CLS/positions (checked)."""
        mod = self._check_input(x, modality)
        return self._embed(x, mod)

    def _embed(self, x: Tensor, mod: str) -> Tensor:
        if self._use_fast_path():
            return self.patch_embed.forward_folded(x, mod)
        return self.patch_embed(x, mod)

    def _features(self, tokens: Tensor, grid: tuple[int, int], fast: bool) -> dict[str, Tensor]:
        out, _ = self._encode(tokens, grid, fast)
        out = self.norm(out)
        return {"cls": out[:, 0].float(), "patch": self._to_grid(out, grid)}

    def forward(self, x: Tensor, modality: str) -> Tensor:
        """CLS embedding of images of one modality.

        Parameters
        ----------
        x : Tensor
            Normalised images (B, C, H, W); C must match ``modality`` (2 for ``"s1"``, 12 for
            ``"s2_l1c"`` / ``"s2_l2a"``); H, W multiples of 16.
        modality : str
            ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``.

        Returns
        -------
        Tensor
            (B, D) float32, after the final norm.
        """
        mod = self._check_input(x, modality)
        fast = self._use_fast_path()
        with self._autocast(x.device):
            tokens = self._embed(x, mod)
            out, _ = self._encode(tokens, self._grid(x), fast)
            # only the CLS row needs the final norm
            return self.norm(out[:, 0]).float()

    def forward_features(self, x: Tensor, modality: str) -> dict[str, Tensor]:
        """CLS and patch embeddings after the final norm.

        Returns
        -------
        dict
            ``"cls"``: (B, D); ``"patch"``: (B, D, H/16, W/16); float32.
        """
        mod = self._check_input(x, modality)
        fast = self._use_fast_path()
        with self._autocast(x.device):
            return self._features(self._embed(x, mod), self._grid(x), fast)

    def resolve_layers(self, layers: int | Sequence[int] | None) -> list[int]:
        """Block indices for :meth:`intermediate`: ``None`` -> ``config.dense_layers``; an int n
        -> the last n blocks; negative indices count from the end."""
        depth = len(self.blocks)
        if layers is None:
            return list(self.config.dense_layers)
        if isinstance(layers, int):
            if not 1 <= layers <= depth:
                raise ValueError(f"layers={layers}: need 1..{depth} last blocks")
            return list(range(depth - layers, depth))
        out = []
        for i in layers:
            j = int(i) + depth if int(i) < 0 else int(i)
            if not 0 <= j < depth:
                raise ValueError(f"block index {i} outside 0..{depth - 1} (depth {depth})")
            out.append(j)
        if not out:
            raise ValueError("layers is empty")
        return out

    def intermediate(self, x: Tensor, modality: str,
                     layers: int | Sequence[int] | None = None) -> list[Tensor]:
        """Final-normed patch tokens after selected blocks, as maps for dense heads.

        Parameters
        ----------
        x : Tensor
            Images (B, C, H, W) of ``modality``.
        modality : str
            Modality name.
        layers : sequence of int, int or None
            0-based block indices; default ``config.dense_layers`` ((3, 5, 7, 11) for
            terrafm-b, evenly spread for the others).

        Returns
        -------
        list of Tensor
            One (B, D, H/16, W/16) float32 map per requested block, in the requested order.
        """
        mod = self._check_input(x, modality)
        idx = self.resolve_layers(layers)
        fast = self._use_fast_path()
        grid = self._grid(x)
        with self._autocast(x.device):
            tokens = self._embed(x, mod)
            _, kept = self._encode(tokens, grid, fast, collect=idx, stop=max(idx))
            return [self._to_grid(self.norm(t), grid) for t in kept]

    def fused_tokens(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Patch tokens (B, N, D) from the cross-attention fusion of several modalities."""
        checked = self._check_multi(inputs)
        return self.patch_embed.forward_multi(checked, folded=self._use_fast_path())

    def encode_tokens(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """Blocks and final norm over embedded patch tokens, for objectives on every token.

        Parameters
        ----------
        tokens : Tensor
            (B, N, D) from :meth:`patch_tokens` or :meth:`fused_tokens` (possibly edited, e.g.
            masked), N = h·w in row-major patch order.
        grid : (int, int)
            Patch grid (h, w).

        Returns
        -------
        Tensor
            (B, 1 + N, D) float32 after the final norm: the CLS token, then the patch tokens.
        """
        if tokens.ndim != 3 or tokens.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"tokens must be (B, {grid[0] * grid[1]}, D) for grid {grid}, "
                             f"got {tuple(tokens.shape)}")
        fast = self._use_fast_path()
        with self._autocast(tokens.device):
            out, _ = self._encode(tokens, grid, fast)
            return self.norm(out).float()

    def forward_fused_features(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Like :meth:`forward_features` for the fusion of several co-registered modalities."""
        checked = self._check_multi(inputs)
        x0 = next(iter(checked.values()))
        fast = self._use_fast_path()
        with self._autocast(x0.device):
            tokens = self.patch_embed.forward_multi(checked, folded=fast)
            return self._features(tokens, self._grid(x0), fast)

    def forward_fused(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """CLS embedding (B, D) of the fusion of co-registered modalities.

        Parameters
        ----------
        inputs : mapping
            ``{"s1": (B, 2, H, W), "s2_l2a": (B, 12, H, W), ...}``; same B, H, W.
            With a single modality the result equals ``model(x, modality)``.
        """
        return self.forward_fused_features(inputs)["cls"]

    # -- bookkeeping ---------------------------------------------------------------------
    def published_keys(self) -> list[str]:
        """State-dict keys that the published checkpoint layout contains (no fusion keys)."""
        return [k for k in self.state_dict() if not k.startswith(FUSION_PREFIX)]

    def fusion_keys(self) -> list[str]:
        """State-dict keys beyond the published layout (fusion query bank, key projection)."""
        return [k for k in self.state_dict() if k.startswith(FUSION_PREFIX)]

    def iter_blocks(self) -> Iterator[Block]:
        """The transformer blocks in order."""
        return iter(self.blocks)
