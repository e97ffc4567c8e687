"""Data loading for pretraining: tiles of chunked training cubes as a PyTorch IterableDataset."""

from xterrafm.data.collate import collate_samples
from xterrafm.data.cube import TrainingCube, open_training_cube
from xterrafm.data.dataset import TileDataset, TileTable
from xterrafm.data.sampling import (
    class_frequencies,
    class_proportions,
    sampled_class_frequencies,
    tile_weights,
)
from xterrafm.data.sharding import ShardPlan, consumed_per_worker, plan_shard
from xterrafm.data.stats import LANDCOVER_CLASSES, TileStats, compute_tile_stats
from xterrafm.data.tiles import TileGrid, make_tile_grid
from xterrafm.data.views import MultiCropConfig, choose_modalities, make_views, random_resized_box

__all__ = [
    "LANDCOVER_CLASSES",
    "MultiCropConfig",
    "ShardPlan",
    "TileDataset",
    "TileGrid",
    "TileStats",
    "TileTable",
    "TrainingCube",
    "choose_modalities",
    "class_frequencies",
    "class_proportions",
    "collate_samples",
    "compute_tile_stats",
    "consumed_per_worker",
    "make_tile_grid",
    "make_views",
    "open_training_cube",
    "plan_shard",
    "random_resized_box",
    "sampled_class_frequencies",
    "tile_weights",
]
