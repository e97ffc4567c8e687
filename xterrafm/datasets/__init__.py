"""Deterministic synthetic Sentinel-1/Sentinel-2 scenes: COGs plus static STAC catalogs.

The default data for xterrafm's tests, examples and main job::

    from xterrafm.datasets import make_synthetic_scene
    scene = make_synthetic_scene("scene/", seed=0, width=448, height=448, n_dates=2)

Structured land cover whose classes only spatial structure separates (for pretraining
evidence) comes from :func:`~xterrafm.datasets.structured.make_structured_scene`.

The scene writer (rasterio, pystac) is imported on first use. Land-cover codes are those of
:mod:`xterrafm.worldcover`.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "PROCESSING_BASELINE": "scene",
    "S2_DN_OFFSET": "scene",
    "SyntheticScene": "scene",
    "make_synthetic_scene": "scene",
    "write_synthetic_training_cube": "training_cube",
    "STRUCTURED_CLASSES": "structured",
    "StructuredScene": "structured",
    "make_structured_scene": "structured",
    "write_structured_training_cube": "structured",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
