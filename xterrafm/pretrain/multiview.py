"""Backbone + DINO head over multi-crop views whose samples keep different modality subsets.

Within one stack of views, rows are grouped by their kept-modality pattern: a group with one
modality goes through that modality's stem (``backbone(x, modality=m)``), a group with
several through ``backbone.forward_fused``. Outputs are put back in row order. For the
masked-token objective the same groups run through the backbone's token path
(``patch_tokens`` / ``fused_tokens``, then ``encode_tokens``), with masked tokens replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xterrafm._imports import import_gate
from xterrafm.pretrain.head import DINOHead

with import_gate():
    import torch
    from torch import nn

__all__ = ["MultiViewModel"]


class MultiViewModel(nn.Module):
    """A TerraFM backbone followed by a :class:`DINOHead`, applied to view stacks.

    Parameters
    ----------
    backbone : TerraFM
        Encoder with ``forward(x, modality)`` and ``forward_fused(inputs)`` returning (B, D).
    head : DINOHead
    modalities : sequence of str
        Column order of the ``keep`` masks (the dataset's modalities).
    mask_token : bool
        Hold a learned mask token (D,) for the masked-token objective
        (:mod:`xterrafm.pretrain.ibot`).
    """

    def __init__(self, backbone: nn.Module, head: DINOHead, modalities: Sequence[str],
                 mask_token: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.modalities = tuple(modalities)
        # the learned token that replaces masked patch tokens (masked-token objective only);
        # a pretraining-time parameter, not part of the exported backbone
        self.mask_token = (nn.Parameter(torch.zeros(1, 1, backbone.embed_dim))
                           if mask_token else None)

    def encode(self, inputs: Mapping[str, torch.Tensor], keep: torch.Tensor,
               masks: torch.Tensor | None = None, mask_tokens: bool = True,
               return_tokens: bool = False) -> torch.Tensor:
        """CLS embeddings (or every output token) of a stack of views.

        Parameters
        ----------
        inputs : mapping modality -> Tensor (N, C, H, W)
        keep : bool Tensor (N, M)
            Modalities kept in each row (at least one per row).
        masks : bool Tensor (N, h*w), optional
            Patch tokens to replace by the mask token (with ``mask_tokens``).
        mask_tokens : bool
            Replace the masked tokens (the student); ``False`` runs the views whole (the
            teacher, which only needs the positions).
        return_tokens : bool
            Return (N, 1 + h*w, D): the CLS token, then the patch tokens.

        Returns
        -------
        Tensor (N, D), or (N, 1 + h*w, D) with ``return_tokens``
        """
        keep_cpu = keep.detach().to("cpu", torch.bool)
        if keep_cpu.ndim != 2 or keep_cpu.shape[1] != len(self.modalities):
            raise ValueError(f"keep must be (N, {len(self.modalities)}), got {tuple(keep.shape)}")
        if not bool(keep_cpu.any(dim=1).all()):
            raise ValueError("every view must keep at least one modality")
        replace = masks is not None and mask_tokens
        if replace and self.mask_token is None:
            raise ValueError("this model was built without a mask token (mask_token=False)")
        patterns, inverse = torch.unique(keep_cpu, dim=0, return_inverse=True)
        outputs, rows = [], []
        for p in range(patterns.shape[0]):
            idx = torch.nonzero(inverse == p).flatten()
            mods = [m for m, k in zip(self.modalities, patterns[p].tolist(), strict=True) if k]
            dev_idx = idx.to(next(iter(inputs.values())).device)
            sub = {m: inputs[m].index_select(0, dev_idx) for m in mods}
            if not (replace or return_tokens):
                out = (self.backbone(sub[mods[0]], modality=mods[0]) if len(mods) == 1
                       else self.backbone.forward_fused(sub))
            else:
                x0 = sub[mods[0]]
                grid = (x0.shape[-2] // self.backbone.patch_size,
                        x0.shape[-1] // self.backbone.patch_size)
                tokens = (self.backbone.patch_tokens(x0, mods[0]) if len(mods) == 1
                          else self.backbone.fused_tokens(sub))
                if replace:
                    m = masks.index_select(0, idx.to(masks.device)).to(tokens.device)
                    tokens = torch.where(m[..., None], self.mask_token.to(tokens.dtype), tokens)
                out = self.backbone.encode_tokens(tokens, grid)
                if not return_tokens:
                    out = out[:, 0]
            outputs.append(out)
            rows.append(idx)
        order = torch.cat(rows)
        result = torch.cat(outputs)
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.numel())
        return result.index_select(0, inv.to(result.device))

    def forward(
        self,
        global_inputs: Mapping[str, torch.Tensor],
        global_keep: torch.Tensor,
        local_inputs: Mapping[str, torch.Tensor] | None = None,
        local_keep: torch.Tensor | None = None,
        return_global_features: bool = False,
        masks: torch.Tensor | None = None,
        mask_tokens: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Head logits of the global views, then the local views: (V*B, K), view-major.

        With ``return_global_features`` also the backbone CLS embeddings of the global views,
        (G*B, D), for regularisers on the embedding itself (KoLeo). With ``masks`` (bool,
        (G*B, h*w), over the global views) also the head logits of the patch tokens at the
        masked positions, (n_masked, K) in the row-major order of ``masks`` — of tokens
        replaced by the mask token when ``mask_tokens`` (the student), of the whole views
        otherwise (the teacher). The extras follow the logits in that order.
        """
        patch_logits = None
        if masks is None:
            feats = [self.encode(global_inputs, global_keep)]
        else:
            tokens = self.encode(global_inputs, global_keep, masks, mask_tokens,
                                 return_tokens=True)
            feats = [tokens[:, 0]]
            picked = tokens[:, 1:][masks.to(tokens.device)]
            patch_logits = self.head(picked.float())
        if local_inputs is not None and local_keep is not None and local_keep.shape[0]:
            feats.append(self.encode(local_inputs, local_keep))
        logits = self.head(torch.cat(feats).float())
        extras: list[torch.Tensor] = []
        if return_global_features:
            extras.append(feats[0])
        if patch_logits is not None:
            extras.append(patch_logits)
        return (logits, *extras) if extras else logits
