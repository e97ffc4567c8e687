"""Deterministic synthetic Sentinel-1/Sentinel-2 scenes: COGs plus static STAC catalogs.

The default data for xterrafm's tests, examples and main job::

    from xterrafm.datasets import make_synthetic_scene
    scene = make_synthetic_scene("scene/", seed=0, width=448, height=448, n_dates=2)

Structured land cover whose classes only spatial structure separates (for pretraining
evidence) comes from :func:`~xterrafm.datasets.structured.make_structured_scene`.

The scene writer (rasterio, pystac) is imported on first use, so that light modules such as
:mod:`xterrafm.tilestats` can use :data:`WORLDCOVER_CLASSES` without pulling pystac.
"""

from __future__ import annotations

import importlib
from typing import Any

from xterrafm.datasets.signatures import WORLDCOVER_CLASSES

_LAZY = {
    "PROCESSING_BASELINE": "xterrafm.datasets.scene",
    "S2_DN_OFFSET": "xterrafm.datasets.scene",
    "SyntheticScene": "xterrafm.datasets.scene",
    "make_synthetic_scene": "xterrafm.datasets.scene",
    "write_synthetic_training_cube": "xterrafm.datasets.training_cube",
    "STRUCTURED_CLASSES": "xterrafm.datasets.structured",
    "StructuredScene": "xterrafm.datasets.structured",
    "make_structured_scene": "xterrafm.datasets.structured",
    "write_structured_training_cube": "xterrafm.datasets.structured",
}

__all__ = ["WORLDCOVER_CLASSES", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xterrafm.datasets' has no attribute {name!r}")
