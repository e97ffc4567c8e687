"""Per-class signatures of the synthetic scenes: S2 spectra and S1 backscatter of each ESA
WorldCover class (:data:`xterrafm.worldcover.WORLDCOVER_CLASSES`).

Values are typical magnitudes of surface reflectance and RTC backscatter for each cover type,
chosen to be plausible and clearly distinct between classes; they are not measurements.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = [
    "S2_REFLECTANCE",
    "S2_PATH_RADIANCE",
    "S1_BACKSCATTER",
    "SCL_OF_CLASS",
    "SCL_CLOUD_MEDIUM",
    "SCL_CLOUD_HIGH",
    "SCL_NODATA",
]

#: Surface reflectance (0..1) per class, bands in TerraFM order
#: B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12.
S2_REFLECTANCE: dict[int, tuple[float, ...]] = {
    10: (0.030, 0.028, 0.050, 0.027, 0.080, 0.230, 0.290, 0.310, 0.330, 0.100, 0.150, 0.070),
    20: (0.050, 0.055, 0.085, 0.085, 0.135, 0.200, 0.235, 0.255, 0.270, 0.090, 0.260, 0.160),
    30: (0.040, 0.040, 0.080, 0.050, 0.120, 0.280, 0.350, 0.380, 0.400, 0.120, 0.240, 0.120),
    40: (0.045, 0.050, 0.095, 0.070, 0.150, 0.300, 0.410, 0.440, 0.460, 0.140, 0.220, 0.110),
    50: (0.100, 0.110, 0.125, 0.135, 0.150, 0.160, 0.170, 0.180, 0.190, 0.070, 0.220, 0.200),
    60: (0.120, 0.140, 0.180, 0.230, 0.260, 0.280, 0.290, 0.300, 0.310, 0.100, 0.380, 0.320),
    70: (0.880, 0.870, 0.860, 0.840, 0.820, 0.800, 0.780, 0.760, 0.750, 0.300, 0.100, 0.060),
    80: (0.060, 0.060, 0.050, 0.030, 0.020, 0.015, 0.012, 0.010, 0.010, 0.005, 0.005, 0.003),
    90: (0.040, 0.040, 0.065, 0.050, 0.085, 0.140, 0.170, 0.190, 0.200, 0.070, 0.120, 0.060),
    95: (0.030, 0.030, 0.055, 0.030, 0.075, 0.190, 0.240, 0.250, 0.265, 0.090, 0.105, 0.045),
    100: (0.070, 0.075, 0.095, 0.105, 0.130, 0.165, 0.190, 0.205, 0.215, 0.075, 0.175, 0.105),
}

#: Top-of-atmosphere minus surface reflectance added for L1C (path radiance-like, strongest in
#: the blue), same band order.
S2_PATH_RADIANCE: tuple[float, ...] = (
    0.095, 0.075, 0.050, 0.035, 0.030, 0.025, 0.020, 0.018, 0.016, 0.010, 0.005, 0.003,
)

#: RTC gamma0 in linear power per class: (VV, VH).
S1_BACKSCATTER: dict[int, tuple[float, float]] = {
    10: (0.120, 0.030),
    20: (0.080, 0.018),
    30: (0.055, 0.011),
    40: (0.075, 0.016),
    50: (0.500, 0.080),
    60: (0.030, 0.004),
    70: (0.040, 0.006),
    80: (0.005, 0.001),
    90: (0.100, 0.020),
    95: (0.160, 0.040),
    100: (0.045, 0.008),
}

#: Sentinel-2 L2A scene classification (SCL) value of each land-cover class
#: (4 vegetation, 5 not vegetated, 6 water, 11 snow).
SCL_OF_CLASS: dict[int, int] = {
    10: 4, 20: 4, 30: 4, 40: 4, 50: 5, 60: 5, 70: 11, 80: 6, 90: 4, 95: 4, 100: 4,
}
SCL_NODATA = 0
SCL_CLOUD_MEDIUM = 8
SCL_CLOUD_HIGH = 9


def lookup_table(values: dict[int, tuple[float, ...]], dtype: type = np.float32) -> np.ndarray:
    """A (256, n) table indexed by class value (rows of unknown classes are zero)."""
    n = len(next(iter(values.values())))
    table = np.zeros((256, n), dtype=dtype)
    for k, v in values.items():
        table[k] = v
    return table
