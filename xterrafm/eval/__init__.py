"""Evaluation protocols for embeddings: kNN, linear probes, segmentation probes, metrics.

Modules: :mod:`~xterrafm.eval.knn` (weighted cosine kNN), :mod:`~xterrafm.eval.linear`
(linear probes), :mod:`~xterrafm.eval.segmentation` (linear head on patch tokens, mIoU),
:mod:`~xterrafm.eval.metrics`, :mod:`~xterrafm.eval.splits` (training fractions, spatial
splits), :mod:`~xterrafm.eval.inputs` (embedding cubes + label rasters → samples),
:mod:`~xterrafm.eval.chips` (labelled GeoTIFF chips), :mod:`~xterrafm.eval.report` and
:mod:`~xterrafm.eval.cli` (``python -m xterrafm eval``).
"""

from xterrafm.eval.chips import ChipSet, embed_chips, embed_images, find_chips
from xterrafm.eval.inputs import (
    LabelledSamples,
    labelled_samples,
    labels_to_embedding_grid,
    open_embedding_cube,
)
from xterrafm.eval.knn import KNNScores, knn, knn_accuracy, knn_f1, knn_scores
from xterrafm.eval.linear import LinearProbe, fit_linear_probe, linear_probe_score
from xterrafm.eval.metrics import (
    accuracy,
    average_precision,
    confusion_matrix,
    mean_average_precision,
    mean_iou,
    micro_f1,
    per_class_iou,
)
from xterrafm.eval.segmentation import (
    SegmentationProbe,
    fit_segmentation_probe,
    patch_features,
    segmentation_miou,
)
from xterrafm.eval.splits import spatial_block_split, subsample_training_set

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
    "mean_average_precision",
    "mean_iou",
    "micro_f1",
    "open_embedding_cube",
    "patch_features",
    "per_class_iou",
    "segmentation_miou",
    "spatial_block_split",
    "subsample_training_set",
]
