"""Evaluation protocols for embeddings: kNN, linear probes, segmentation probes, metrics.

Modules: :mod:`~xterrafm.eval.knn_probe` (weighted cosine kNN), :mod:`~xterrafm.eval.linear`
(linear probes), :mod:`~xterrafm.eval.segmentation` (linear head on patch tokens, mIoU),
:mod:`~xterrafm.eval.metrics`, :mod:`~xterrafm.eval.class_balance` (class-balanced probe
fits), :mod:`~xterrafm.eval.splits` (training fractions, spatial splits),
:mod:`~xterrafm.eval.inputs` (embedding cubes + label rasters → samples),
:mod:`~xterrafm.eval.chips` (labelled GeoTIFF chips), :mod:`~xterrafm.eval.report` and
:mod:`~xterrafm.eval.cli` (``python -m xterrafm eval``); benchmark readers
:mod:`~xterrafm.eval.geobench` (GEO-Bench HDF5 tasks) and :mod:`~xterrafm.eval.copernicus_bench`
(EuroSAT-S1), and :mod:`~xterrafm.eval.validate` / :mod:`~xterrafm.eval.validate_cli`
(``python -m xterrafm validate``: the paper's figures reproduced).
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

# public name -> submodule defining it, imported on first use (mounting the ``eval`` subcommand
# for ``xterrafm --help`` must not import torch)
_EXPORTS = {
    "KNNScores": "knn_probe",
    "knn": "knn_probe",
    "knn_accuracy": "knn_probe",
    "knn_f1": "knn_probe",
    "knn_scores": "knn_probe",
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
