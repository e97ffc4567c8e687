"""ESA WorldCover land-cover classes: the one list of codes every part of xterrafm uses.

Land-cover maps in training cubes (``landcover`` variable), the synthetic scenes, the per-tile
class histograms (:mod:`xterrafm.tilestats`) and the class-aware sampling of pretraining all
use these codes; ``0`` is no data. Nothing here imports a third-party package.
"""

from __future__ import annotations

__all__ = ["WORLDCOVER_CLASSES", "WORLDCOVER_NODATA"]

#: ESA WorldCover 2021 classes, code -> name, in ascending code order (the order of the
#: columns of class histograms and class counts).
WORLDCOVER_CLASSES: dict[int, str] = {
    10: "tree cover",
    20: "shrubland",
    30: "grassland",
    40: "cropland",
    50: "built-up",
    60: "bare / sparse vegetation",
    70: "snow and ice",
    80: "permanent water bodies",
    90: "herbaceous wetland",
    95: "mangroves",
    100: "moss and lichen",
}

#: Code of pixels without a class.
WORLDCOVER_NODATA = 0
