"""Data loading for pretraining: tiles of chunked training cubes as a PyTorch IterableDataset."""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "MODALITY_SUBSET_RULES": "subsets",
    "MultiCropConfig": "views",
    "ShardPlan": "sharding",
    "TileDataset": "dataset",
    "TileGrid": "tiles",
    "TileStats": "stats",
    "TileTable": "dataset",
    "TrainingCube": "cube",
    "choose_modalities": "views",
    "class_frequencies": "sampling",
    "class_proportions": "sampling",
    "collate_samples": "collate",
    "compute_tile_stats": "stats",
    "consumed_per_worker": "sharding",
    "make_tile_grid": "tiles",
    "make_views": "views",
    "plan_shard": "sharding",
    "random_resized_box": "views",
    "sampled_class_frequencies": "sampling",
    "tile_weights": "sampling",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
