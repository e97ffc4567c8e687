"""Modality-specific patch embedding of TerraFM, its multi-modal fusion and its folded form.

Published structure (``shared/reference/terrafm_model.md``), parameter names as in the
checkpoint:

* one stem per modality, ``conv2d_<modality>`` (``Conv2d(C -> S, kernel = stride = 16)``,
  S = 3·D) plus a learned modality vector ``<modality>_embed`` (1, S);
* a shared token projection ``projection``: ``proj1`` (S -> S, no bias) -> ``norm_input``
  (LayerNorm, eps 1e-5) -> ``proj2`` (S -> S) -> ``proj3`` (S -> D).

Beyond the checkpoint, ``fusion`` holds the query bank and key projection of the
cross-attention that fuses several modalities at each patch position.

A stride-16 convolution with a 16 x 16 kernel is a matrix product over non-overlapping patches;
this module computes it as such (:func:`patchify` + ``F.linear`` with the conv weight), which
lets the inference fast path fold ``proj1`` into the stem and ``proj3 · proj2`` into one map.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence

from xterrafm._imports import import_gate
from xterrafm.models.config import TerraFMConfig

with import_gate():
    import torch
    import torch.nn.functional as F
    from torch import Tensor, nn

__all__ = ["ModalityFusion", "ModalityPatchEmbed", "TokenProjection", "patchify"]


def patchify(x: Tensor, patch_size: int) -> Tensor:
    """Cut images into flattened non-overlapping patches.

    Parameters
    ----------
    x : Tensor
        Images (B, C, H, W) with H and W multiples of ``patch_size``.
    patch_size : int
        Patch side p in pixels.

    Returns
    -------
    Tensor
        (B, N, C·p·p) with N = (H/p)·(W/p) in row-major patch order; the last axis is ordered
        (channel, row, column) like a ``Conv2d`` weight, so ``F.linear(patchify(x), w.flatten(1),
        b)`` equals ``conv2d(x, w, b, stride=p)`` flattened to tokens.
    """
    b, c, h, w = x.shape
    p = patch_size
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


class TokenProjection(nn.Module):
    """Shared projection of stem tokens: ``proj1`` -> ``norm_input`` -> ``proj2`` -> ``proj3``.

    Parameters
    ----------
    stem_dim : int
        Stem width S (3·D).
    embed_dim : int
        Output token width D.
    eps : float
        Epsilon of ``norm_input`` (1e-5 published).
    """

    def __init__(self, stem_dim: int, embed_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.proj1 = nn.Linear(stem_dim, stem_dim, bias=False)
        self.norm_input = nn.LayerNorm(stem_dim, eps=eps)
        self.proj2 = nn.Linear(stem_dim, stem_dim)
        self.proj3 = nn.Linear(stem_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Stem tokens (..., S) -> tokens (..., D)."""
        return self.after_proj1(self.proj1(x))

    def after_proj1(self, x: Tensor) -> Tensor:
        """The part after ``proj1``: (..., S) -> (..., D)."""
        return self.proj3(self.proj2(self.norm_input(x)))


class ModalityFusion(nn.Module):
    """Per-patch cross-attention weights over modalities (pretraining-time parameters).

    A bank of ``num_queries`` learned queries attends over the keys of the M modalities present
    at a patch position; the attention weights are averaged over the queries. Because the
    attended values are linear in the weights, averaging the weights first equals averaging the
    attended values. With M = 1 every weight is exactly 1.

    Parameters
    ----------
    stem_dim : int
        Stem width S (input of the key projection).
    key_dim : int
        Width of keys and queries.
    num_queries : int
        Size of the query bank.
    """

    def __init__(self, stem_dim: int, key_dim: int, num_queries: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(num_queries, key_dim))
        self.key = nn.Linear(stem_dim, key_dim)
        self.scale = key_dim**-0.5

    def weights(self, keys: Tensor) -> Tensor:
        """Keys (B, M, N, K) -> modality weights (B, M, N, 1), summing to 1 over M."""
        logits = torch.einsum("bmnk,qk->bnqm", keys, self.queries.to(keys.dtype)) * self.scale
        w = logits.softmax(dim=-1).mean(dim=-2)  # (B, N, M)
        return w.permute(0, 2, 1).unsqueeze(-1)

    @staticmethod
    def combine(weights: Tensor, values: Tensor) -> Tensor:
        """Weighted sum over modalities: (B, M, N, 1) x (B, M, N, S) -> (B, N, S)."""
        return (weights * values).sum(dim=1)


def _no_autocast(sources: Sequence[Tensor]) -> contextlib.ExitStack:
    """A context that switches autocast off on the devices of ``sources``."""
    stack = contextlib.ExitStack()
    for kind in sorted({t.device.type for t in sources}):
        if torch.is_autocast_enabled(kind):
            stack.enter_context(torch.autocast(device_type=kind, enabled=False))
    return stack


class _FoldCache:
    """Derived tensors keyed on the identity and version counters of their source parameters.

    An entry is rebuilt when any source parameter is replaced (``data_ptr``), modified in place
    (``_version``: ``load_state_dict``, optimiser steps, ``.copy_``), or moved/cast. Builds are
    serialised by a lock, so threads sharing a model (Dask threads of one worker) that miss the
    cache together build an entry once instead of once each. Builds run with autocast off on
    the sources' devices: an entry first needed inside a bf16/fp16 forward pass is computed in
    the sources' own precision, as :meth:`TerraFM.prepare` would have computed it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, object]] = {}
        self._lock = threading.RLock()

    def clear(self) -> None:
        self._entries.clear()

    def __getstate__(self) -> dict:  # derived data: not pickled / sent to workers
        return {"_entries": {}}

    def __setstate__(self, state: dict) -> None:
        self._entries = {}
        self._lock = threading.RLock()

    def __deepcopy__(self, memo: dict) -> _FoldCache:
        return _FoldCache()

    def get(self, name: str, sources: Sequence[Tensor], build: Callable[[], object]) -> object:
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources)
        hit = self._entries.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        with self._lock:
            hit = self._entries.get(name)
            if hit is not None and hit[0] == key:  # built by another thread meanwhile
                return hit[1]
            with torch.inference_mode(False), torch.no_grad(), _no_autocast(sources):
                value = build()
            self._entries[name] = (key, value)
        return value


def _fold_linear_into(outer: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """``outer · (weight x + bias)`` as one affine map.

    Computed in float32 at least (float64 would halve the speed of this once-per-process
    product for a relative error of the fold below 1e-6, the rounding of the unfolded
    forward pass itself).
    """
    dtype = torch.promote_types(weight.dtype, torch.float32)
    o = outer.to(dtype)
    w = o @ weight.to(dtype)
    b = o @ bias.to(dtype)
    return w.to(weight.dtype), b.to(weight.dtype)


class ModalityPatchEmbed(nn.Module):
    """Patch embedding with one stem per modality and a shared token projection.

    Parameters
    ----------
    config : TerraFMConfig
        Widths, patch size, modalities and their channel counts.

    Notes
    -----
    ``forward`` is the published computation. ``forward_folded`` is the algebraically equal
    inference form: ``proj1 · conv`` and ``proj3 · proj2`` folded into single maps, cached until a
    source parameter changes. ``forward_multi`` fuses several modalities.
    """

    def __init__(self, config: TerraFMConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.modalities = tuple(config.modalities)
        s = config.stem_dim
        for m in self.modalities:
            setattr(self, f"{m}_embed", nn.Parameter(torch.zeros(1, s)))
        for m in self.modalities:
            c = config.in_channels[m]
            setattr(self, f"conv2d_{m}", nn.Conv2d(c, s, config.patch_size, config.patch_size))
        self.projection = TokenProjection(s, config.embed_dim, eps=config.norm_input_eps)
        self.fusion = ModalityFusion(s, config.embed_dim, config.fusion_queries)
        self._folds = _FoldCache()

    # -- parameters of one modality ------------------------------------------------------
    def stem_conv(self, modality: str) -> nn.Conv2d:
        """The ``Conv2d`` stem of ``modality``."""
        return getattr(self, f"conv2d_{modality}")

    def modality_vector(self, modality: str) -> Tensor:
        """The learned (1, S) vector of ``modality``."""
        return getattr(self, f"{modality}_embed")

    def _stem_affine(self, modality: str) -> tuple[Tensor, Tensor]:
        """Stem as an affine map on flattened patches: weight (S, C·p·p), bias (S,)."""
        conv = self.stem_conv(modality)
        return conv.weight.flatten(1), conv.bias + self.modality_vector(modality)[0]

    # -- published path ------------------------------------------------------------------
    def stem(self, x: Tensor, modality: str) -> Tensor:
        """Stem tokens (B, N, S): convolution plus modality vector."""
        w, b = self._stem_affine(modality)
        return F.linear(patchify(x, self.patch_size), w, b)

    def forward(self, x: Tensor, modality: str) -> Tensor:
        """Images (B, C, H, W) of one modality -> tokens (B, N, D), N = H/16 · W/16."""
        return self.projection(self.stem(x, modality))

    # -- folded inference path -----------------------------------------------------------
    def clear_folds(self) -> None:
        """Drop the cached folded weights (they are also rebuilt automatically on change)."""
        self._folds.clear()

    def _folded_values(self, modality: str) -> tuple[Tensor, Tensor]:
        conv = self.stem_conv(modality)
        sources = (conv.weight, conv.bias, self.modality_vector(modality),
                   self.projection.proj1.weight)

        def build() -> tuple[Tensor, Tensor]:
            w, b = self._stem_affine(modality)
            return _fold_linear_into(self.projection.proj1.weight, w, b)

        return self._folds.get(f"values:{modality}", sources, build)  # type: ignore[return-value]

    def _folded_keys(self, modality: str) -> tuple[Tensor, Tensor]:
        conv = self.stem_conv(modality)
        key = self.fusion.key
        sources = (conv.weight, conv.bias, self.modality_vector(modality), key.weight, key.bias)

        def build() -> tuple[Tensor, Tensor]:
            w, b = self._stem_affine(modality)
            wk, bk = _fold_linear_into(key.weight, w, b)
            return wk, bk + key.bias

        return self._folds.get(f"keys:{modality}", sources, build)  # type: ignore[return-value]

    def _folded_head(self) -> tuple[Tensor, Tensor]:
        p2, p3 = self.projection.proj2, self.projection.proj3
        sources = (p2.weight, p2.bias, p3.weight, p3.bias)

        def build() -> tuple[Tensor, Tensor]:
            w, b = _fold_linear_into(p3.weight, p2.weight, p2.bias)
            return w, b + p3.bias

        return self._folds.get("head", sources, build)  # type: ignore[return-value]

    def _head_folded(self, x: Tensor) -> Tensor:
        w32, b32 = self._folded_head()
        return F.linear(self.projection.norm_input(x), w32, b32)

    def forward_folded(self, x: Tensor, modality: str) -> Tensor:
        """Same result as :meth:`forward` with two S x S products per token fewer (no autograd
        into the folded parameters: for inference)."""
        wv, bv = self._folded_values(modality)
        return self._head_folded(F.linear(patchify(x, self.patch_size), wv, bv))

    def prepare_folds(self, modality: str) -> None:
        """Build the folded maps of ``modality`` (and the shared head map) now, instead of in
        the first folded forward pass.

        For ViT-B the folds are two products of about 24 GFLOP together, about half a second on
        one core: done once per process ahead of the first batch, off its critical path.
        """
        self._folded_values(modality)
        self._folded_head()

    # -- several modalities --------------------------------------------------------------
    def forward_multi(self, inputs: Mapping[str, Tensor], folded: bool = False) -> Tensor:
        """Fuse co-registered images of several modalities into tokens (B, N, D).

        Parameters
        ----------
        inputs : mapping
            ``{modality: images (B, C_m, H, W)}``, same B, H, W for all.
        folded : bool
            Use the folded maps (inference); with one modality the result is then identical to
            :meth:`forward_folded`, otherwise identical to :meth:`forward`.
        """
        values, keys = [], []
        for m, x in inputs.items():
            patches = patchify(x, self.patch_size)
            if folded:
                wv, bv = self._folded_values(m)
                wk, bk = self._folded_keys(m)
                values.append(F.linear(patches, wv, bv))
                keys.append(F.linear(patches, wk, bk))
            else:
                s = self.stem(x, m)
                values.append(self.projection.proj1(s))
                keys.append(self.fusion.key(s))
        v = torch.stack(values, dim=1)
        k = torch.stack(keys, dim=1)
        fused = self.fusion.combine(self.fusion.weights(k), v)
        if folded:
            return self._head_folded(fused)
        return self.projection.after_proj1(fused)

    def folded_parameters(self) -> list[Tensor]:
        """Parameters whose gradients the folded path does not propagate."""
        return [p for n, p in self.named_parameters() if not n.startswith("projection.norm")]
