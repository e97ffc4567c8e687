"""Evidence that pretraining learns: kNN land-cover accuracy of encoder embeddings.

Windows of a training cube are embedded (CLS token of one modality, normalised, NaN -> 0)
and labelled with their majority land-cover class; a cosine kNN (:func:`xterrafm.eval.knn_probe.knn`)
trained on one half of a spatial checkerboard of windows is scored on the other half.
"""

from __future__ import annotations

import os

from xterrafm._imports import import_gate
from xterrafm.data.cube import TrainingCube

with import_gate():
    import numpy as np
    import torch
    from torch import nn

__all__ = ["S2_EVIDENCE_OVERRIDES", "embedding_effective_rank", "knn_landcover_accuracy",
           "landcover_windows"]

#: Overrides of the ``tiny`` config of the Sentinel-2 evidence run (``docs/pretraining.md``,
#: "Held-out scenes"): 300 steps of batch 16 on 56 px tiles with 48/32 px crops, 64 prototypes,
#: DINO's center momentum, KoLeo against collapse and radiometric jitter of the views, on an
#: S2 L2A training cube of the synthetic scene (896 px, seed 0, 2 dates).
S2_EVIDENCE_OVERRIDES: dict[str, object] = {
    "batch_size": 16, "tile_size": 56, "global_crop_size": 48, "local_crop_size": 32,
    "out_dim": 64, "center_momentum": 0.9, "koleo_weight": 1.0,
    "brightness": 0.5, "contrast": 0.5, "band_jitter": 0.2, "noise": 0.1,
    "base_lr": 0.002, "total_steps": 300, "max_steps": 300,
}


def landcover_windows(
    cube: TrainingCube | str | os.PathLike, modality: str = "s2_l2a", window: int = 32,
    time_index: int = 0, normalization: str = "terrafm-v1",
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Cut a cube into non-overlapping labelled windows.

    Returns
    -------
    x : Tensor (N, C, window, window)
        Normalised inputs (NaN -> 0).
    labels : ndarray (N,)
        Majority WorldCover class of each window (windows without land-cover are dropped).
    split : ndarray (N,) bool
        Checkerboard of 4 x 4-window blocks: True = training window.
    """
    from xterrafm.model_input import normalize_and_fill

    if not isinstance(cube, TrainingCube):
        cube = TrainingCube(cube)
    ny, nx = cube.height // window, cube.width // window
    region = (0, ny * window, 0, nx * window)
    raw = cube.read_modality(modality, region, times=[time_index])[0]
    x = normalize_and_fill(raw, modality, normalization)[0]
    lc = cube.read_landcover(region)
    xs, labels, split = [], [], []
    for i in range(ny):
        for j in range(nx):
            lab = lc[i * window:(i + 1) * window, j * window:(j + 1) * window].ravel()
            lab = lab[lab > 0]
            if lab.size == 0:
                continue
            values, counts = np.unique(lab, return_counts=True)
            xs.append(x[:, i * window:(i + 1) * window, j * window:(j + 1) * window])
            labels.append(int(values[np.argmax(counts)]))
            split.append(((i // 4) + (j // 4)) % 2 == 0)
    return torch.from_numpy(np.stack(xs)), np.asarray(labels), np.asarray(split)


@torch.no_grad()
def knn_landcover_accuracy(
    model: nn.Module, cube: TrainingCube | str | os.PathLike, modality: str = "s2_l2a",
    window: int = 32, k: int = 10, batch_size: int = 256,
) -> float:
    """Top-1 kNN accuracy of ``model``'s CLS embeddings on majority land-cover labels.

    Parameters
    ----------
    model : TerraFM
        Encoder (``model(x, modality=...) -> (B, D)``).
    cube : TrainingCube or path
    modality : str
    window : int
        Window side in pixels (a multiple of the patch size).
    k : int
        Neighbours of the cosine kNN.
    """
    from xterrafm.eval.knn_probe import knn_accuracy

    x, labels, split = landcover_windows(cube, modality, window)
    model.eval()
    emb = torch.cat([model(x[i:i + batch_size], modality=modality)
                     for i in range(0, len(x), batch_size)]).float()
    return float(knn_accuracy(emb[split], labels[split], emb[~split], labels[~split], k=k))


def embedding_effective_rank(embeddings: torch.Tensor) -> float:
    """Effective rank of a set of embeddings: a measure of dimensional collapse.

    ``exp(H(p))`` with ``p`` the normalised squared singular values of the centred
    embeddings: ``D`` when the variance is spread evenly over ``D`` directions, 1 when it lies
    on one direction (collapse).

    Parameters
    ----------
    embeddings : Tensor (N, D)

    Returns
    -------
    float
        Between 1 and ``min(N, D)``.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) embeddings, got {tuple(embeddings.shape)}")
    x = embeddings.double()
    s2 = torch.linalg.svdvals(x - x.mean(0)) ** 2
    if float(s2.sum()) == 0.0:
        raise ValueError("all embeddings are identical: the effective rank is undefined")
    p = s2 / s2.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
