"""Backbone + DINO head over multi-crop views whose samples keep different modality subsets.

Within one stack of views, rows are grouped by their kept-modality pattern: a group with one
modality goes through that modality's stem (``backbone(x, modality=m)``), a group with
several through ``backbone.forward_fused``. Outputs are put back in row order.
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
    """

    def __init__(self, backbone: nn.Module, head: DINOHead, modalities: Sequence[str]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.modalities = tuple(modalities)

    def encode(self, inputs: Mapping[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """CLS embeddings of a stack of views.

        Parameters
        ----------
        inputs : mapping modality -> Tensor (N, C, H, W)
        keep : bool Tensor (N, M)
            Modalities kept in each row (at least one per row).

        Returns
        -------
        Tensor (N, D)
        """
        keep_cpu = keep.detach().to("cpu", torch.bool)
        if keep_cpu.ndim != 2 or keep_cpu.shape[1] != len(self.modalities):
            raise ValueError(f"keep must be (N, {len(self.modalities)}), got {tuple(keep.shape)}")
        if not bool(keep_cpu.any(dim=1).all()):
            raise ValueError("every view must keep at least one modality")
        patterns, inverse = torch.unique(keep_cpu, dim=0, return_inverse=True)
        outputs, rows = [], []
        for p in range(patterns.shape[0]):
            idx = torch.nonzero(inverse == p).flatten()
            mods = [m for m, k in zip(self.modalities, patterns[p].tolist(), strict=True) if k]
            dev_idx = idx.to(next(iter(inputs.values())).device)
            if len(mods) == 1:
                out = self.backbone(inputs[mods[0]].index_select(0, dev_idx), modality=mods[0])
            else:
                out = self.backbone.forward_fused(
                    {m: inputs[m].index_select(0, dev_idx) for m in mods}
                )
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
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Head logits of the global views, then the local views: (V*B, K), view-major.

        With ``return_global_features`` also the backbone CLS embeddings of the global views,
        (G*B, D), for regularisers on the embedding itself (KoLeo).
        """
        feats = [self.encode(global_inputs, global_keep)]
        if local_inputs is not None and local_keep is not None and local_keep.shape[0]:
            feats.append(self.encode(local_inputs, local_keep))
        logits = self.head(torch.cat(feats).float())
        if return_global_features:
            return logits, feats[0]
        return logits
