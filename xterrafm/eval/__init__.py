"""Evaluation protocols for embeddings: kNN, linear probes, segmentation probes, metrics.

Modules: :mod:`~xterrafm.eval.knn` (weighted cosine kNN), :mod:`~xterrafm.eval.linear`
(linear probes), :mod:`~xterrafm.eval.segmentation` (linear head on patch tokens, mIoU),
:mod:`~xterrafm.eval.metrics`, :mod:`~xterrafm.eval.splits` (training fractions, spatial
splits), :mod:`~xterrafm.eval.inputs` (embedding cubes + label rasters → samples),
:mod:`~xterrafm.eval.chips` (labelled GeoTIFF chips), :mod:`~xterrafm.eval.report` and
:mod:`~xterrafm.eval.cli` (``python -m xterrafm eval``).
"""

from __future__ import annotations

import importlib
from typing import Any

# eager: the function ``knn`` shares its name with its module, and a lazy name would lose to
# the module attribute that the first ``import xterrafm.eval.knn`` sets (knn.py loads torch
# only when a kNN runs)
from xterrafm.eval.knn import KNNScores, knn, knn_accuracy, knn_f1, knn_scores

# public name -> submodule defining it; imported on first use, so that mounting the ``eval``
# subcommand (``xterrafm.eval.cli``) for ``xterrafm --help`` does not import torch
_LAZY = {
    "ChipSet": "chips",
    "embed_chips": "chips",
    "embed_images": "chips",
    "find_chips": "chips",
    "LabelledSamples": "inputs",
    "labelled_samples": "inputs",
    "labels_to_embedding_grid": "inputs",
    "open_embedding_cube": "inputs",
    "LinearProbe": "linear",
    "fit_linear_probe": "linear",
    "linear_probe_score": "linear",
    "accuracy": "metrics",
    "average_precision": "metrics",
    "confusion_matrix": "metrics",
    "macro_accuracy": "metrics",
    "mean_average_precision": "metrics",
    "mean_iou": "metrics",
    "micro_f1": "metrics",
    "per_class_iou": "metrics",
    "per_class_recall": "metrics",
    "SegmentationProbe": "segmentation",
    "fit_segmentation_probe": "segmentation",
    "patch_features": "segmentation",
    "segmentation_miou": "segmentation",
    "spatial_block_split": "splits",
    "subsample_training_set": "splits",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ChipSet",
    "KNNScores",
    "LabelledSamples",
    "LinearProbe",
    "SegmentationProbe",
    "accuracy",
    "average_precision",
    "confusion_matrix",
    "embed_chips",
    "embed_images",
    "find_chips",
    "fit_linear_probe",
    "fit_segmentation_probe",
    "knn",
    "knn_accuracy",
    "knn_f1",
    "knn_scores",
    "labelled_samples",
    "labels_to_embedding_grid",
    "linear_probe_score",
    "macro_accuracy",
    "mean_average_precision",
    "mean_iou",
    "micro_f1",
    "open_embedding_cube",
    "patch_features",
    "per_class_iou",
    "per_class_recall",
    "segmentation_miou",
    "spatial_block_split",
    "subsample_training_set",
]
