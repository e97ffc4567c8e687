"""Collation of tile samples and multi-crop views into batches.

View tensors are stacked view-major: ``(V, B, ...)`` flattened to ``(V*B, ...)``, so rows
``v*B:(v+1)*B`` hold view ``v`` of every sample (the convention of the DINO loss).
"""

from __future__ import annotations

from collections.abc import Sequence

from xterrafm._imports import import_gate

with import_gate():
    import torch

__all__ = ["collate_samples"]

_VIEW_KEYS = ("global", "local")


def collate_samples(samples: Sequence[dict]) -> dict:
    """Collate raw-tile or view samples of :class:`~xterrafm.data.TileDataset` into a batch.

    Returns
    -------
    dict
        ``"tile"``: (B,) int64; ``"class_proportions"``: (B, K); for views
        ``"global"`` / ``"local"``: {modality: (V*B, C, S, S)} and ``"*_keep"``: (V*B, M);
        for raw tiles ``"inputs"``: {modality: (B, C, H, W)}, ``"present"``: (B, M),
        ``"landcover"``: (B, H, W).
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    first = samples[0]
    out: dict = {
        "tile": torch.tensor([s["tile"] for s in samples], dtype=torch.int64),
        "class_proportions": torch.stack([s["class_proportions"] for s in samples]),
    }
    for key in _VIEW_KEYS:
        if key not in first:
            continue
        out[key] = {
            m: torch.stack([s[key][m] for s in samples], dim=1).flatten(0, 1)
            for m in first[key]
        }
        out[f"{key}_keep"] = torch.stack([s[f"{key}_keep"] for s in samples], dim=1).flatten(0, 1)
    if "inputs" in first:
        out["inputs"] = {m: torch.stack([s["inputs"][m] for s in samples]) for m in first["inputs"]}
        out["present"] = torch.stack([s["present"] for s in samples])
        out["landcover"] = torch.stack([s["landcover"] for s in samples])
    return out
