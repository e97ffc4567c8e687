"""The pixels of the synthetic scenes: Sentinel-2 and Sentinel-1 rasters from a land-cover map.

Values follow the land-cover class (:mod:`xterrafm.datasets.signatures`) with texture,
per-date phenology, clouds, speckle and noise; nodata areas (an orbit-edge wedge in S2, a
swath-edge strip in S1) mark one date. Every random draw comes from its own stream
(:func:`rng_stream`), a deterministic function of the seed. :mod:`xterrafm.datasets.scene` writes
the STAC metadata around these rasters.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

from xterrafm._imports import import_gate
from xterrafm.bands import S1, S2_L2A
from xterrafm.datasets.cog import write_cog
from xterrafm.datasets.fields import smooth_field
from xterrafm.datasets.signatures import (
    S1_BACKSCATTER,
    S2_PATH_RADIANCE,
    S2_REFLECTANCE,
    SCL_CLOUD_HIGH,
    SCL_CLOUD_MEDIUM,
    SCL_NODATA,
    SCL_OF_CLASS,
    lookup_table,
)

with import_gate():
    import numpy as np
    from affine import Affine
    from odc.geo.geobox import GeoBox

__all__ = ["RNG_LANDCOVER", "S2_DN_OFFSET", "pixel_grid", "rng_stream", "write_s1_rasters",
           "write_s2_rasters"]

#: Offset added to Sentinel-2 digital numbers: DN = reflectance * 10000 + S2_DN_OFFSET.
S2_DN_OFFSET = 1000

# Reflectance of an opaque cloud per S2 band (bright, flat, lower in SWIR and B09).
_CLOUD_REFLECTANCE = np.array(
    [0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55, 0.25, 0.35, 0.25], dtype=np.float32
)
_CLOUD_ALPHA_MEDIUM, _CLOUD_ALPHA_HIGH = 0.5, 0.9
_VEGETATION = (10, 20, 30, 90, 95, 100)
_CROP, _WATER = 40, 80
# Indices (TerraFM order) of the red-edge/NIR bands that follow phenology: B05..B8A.
_PHENOLOGY_BANDS = range(4, 9)
# Random streams: one per purpose, so changing one part of the generator leaves the others alone.
RNG_LANDCOVER, _RNG_TEXTURE, _RNG_S1_TEXTURE = 1, 2, 3
_RNG_DATE, _RNG_CLOUD, _RNG_S2_NOISE, _RNG_S1 = 10, 11, 12, 20


def rng_stream(seed: int, *tags: int) -> np.random.Generator:
    """An independent random stream for (seed, purpose, index...)."""
    return np.random.default_rng([seed, *tags])


def pixel_grid(x0: float, y0: float, res: float, height: int, width: int, crs: str) -> GeoBox:
    """GeoBox at ``res`` metres covering ``height x width`` 10 m pixels from origin (x0, y0)."""
    f = int(round(res / 10))
    shape = (-(-height // f), -(-width // f))
    return GeoBox(shape, Affine(res, 0.0, x0, 0.0, -res, y0), crs)


def _block_mean(a: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Mean over f x f blocks of a padded 10 m field, cropped to ``shape``."""
    if f == 1:
        return a[: shape[0], : shape[1]]
    hp, wp = a.shape
    m = a.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3), dtype=np.float32)
    return m[: shape[0], : shape[1]]


def _edge_mask(shape: tuple[int, int], f: int, height: int, width: int, kind: str) -> np.ndarray:
    """Nodata area at a resolution of ``f`` x 10 m, judged at pixel centres.

    ``"wedge"``: S2 orbit edge, a triangle in the upper-left corner (about 12 % of the scene).
    ``"strip"``: S1 swath edge along the right side (about 5 %).
    """
    v = ((np.arange(shape[0]) + 0.5) * f / height)[:, None]
    u = ((np.arange(shape[1]) + 0.5) * f / width)[None, :]
    if kind == "wedge":
        return u < 0.35 - 0.5 * v
    return u > 0.92 + 0.05 * v


def _to_dn(reflectance: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """Reflectance -> uint16 DN with the baseline offset; nodata pixels -> 0, data never 0."""
    dn = np.rint(reflectance * 10000.0 + S2_DN_OFFSET)
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[nodata] = 0
    return dn


def write_s2_rasters(
    root: Path,
    seed: int,
    mods: tuple[str, ...],
    lc_pad: np.ndarray,
    grids: dict[float, GeoBox],
    height: int,
    width: int,
    datestr: list[str],
    nodata_date: int | None,
    cloud_fraction: float,
    band_paths: dict,
    scl_paths: dict,
    nodata_masks: dict,
    cloud_masks: dict,
    cloud_pct: dict,
) -> None:
    """Simulate and write the S2 L2A/L1C bands and SCL of every date."""
    pad_shape = lc_pad.shape
    refl_lut = lookup_table(S2_REFLECTANCE)
    scl_lut = lookup_table({k: (v,) for k, v in SCL_OF_CLASS.items()}, np.uint8)[:, 0]
    texture = 1.0 + 0.05 * smooth_field(rng_stream(seed, _RNG_TEXTURE), pad_shape, 4.0)
    normal = NormalDist()
    for d, ds in enumerate(datestr):
        rng = rng_stream(seed, _RNG_DATE, d)
        gain = np.float32(1.0 + 0.02 * rng.standard_normal())
        pheno = np.ones(256, dtype=np.float32)
        pheno[list(_VEGETATION)] = 1.0 + 0.05 * rng.standard_normal(len(_VEGETATION))
        pheno[_CROP] = np.clip(1.0 + 0.25 * rng.standard_normal(), 0.6, 1.4)
        path_gain = 1.0 + 0.1 * rng.standard_normal()
        alpha = np.zeros(pad_shape, dtype=np.float32)
        scl10 = scl_lut[lc_pad]
        if cloud_fraction > 0:
            cf = smooth_field(rng_stream(seed, _RNG_CLOUD, d), pad_shape, 5.0)
            medium = cf > normal.inv_cdf(1.0 - cloud_fraction)
            high = cf > normal.inv_cdf(1.0 - 0.5 * cloud_fraction)
            alpha[medium] = _CLOUD_ALPHA_MEDIUM
            alpha[high] = _CLOUD_ALPHA_HIGH
            scl10[medium] = SCL_CLOUD_MEDIUM
            scl10[high] = SCL_CLOUD_HIGH
        cloud_masks[d] = np.ascontiguousarray(alpha[:height, :width] > 0)
        cloud_pct[d] = float(100.0 * cloud_masks[d].mean())
        pheno_px = pheno[lc_pad]
        masks = {
            r: (_edge_mask(tuple(g.shape), int(r // 10), height, width, "wedge")
                if d == nodata_date else np.zeros(tuple(g.shape), dtype=bool))
            for r, g in grids.items()
        }
        for m in ("s2_l2a", "s2_l1c"):
            if m in mods:
                band_paths[m][d] = {}
                nodata_masks[m][d] = masks[10.0]
        for bi, spec in enumerate(S2_L2A.bands):
            surf = refl_lut[:, bi][lc_pad] * texture * gain
            if bi in _PHENOLOGY_BANDS:
                surf *= pheno_px
            noise = rng_stream(seed, _RNG_S2_NOISE, d, bi).standard_normal(pad_shape, dtype=np.float32)
            surf += noise * (0.003 + 0.02 * surf)
            surf = surf * (1.0 - alpha) + alpha * _CLOUD_REFLECTANCE[bi]
            res = spec.resolution
            grid = grids[res]
            f = int(res // 10)
            if "s2_l2a" in mods:
                dn = _to_dn(_block_mean(surf, f, tuple(grid.shape)), masks[res])
                band_paths["s2_l2a"][d][spec.name] = write_cog(
                    root / "data" / "s2_l2a" / ds / f"{spec.name}.tif", dn, grid, 0)
            if "s2_l1c" in mods:
                toa = surf * 0.96 + np.float32(S2_PATH_RADIANCE[bi] * path_gain)
                dn = _to_dn(_block_mean(toa, f, tuple(grid.shape)), masks[res])
                band_paths["s2_l1c"][d][spec.name] = write_cog(
                    root / "data" / "s2_l1c" / ds / f"{spec.name}.tif", dn, grid, 0)
        if "s2_l2a" in mods:
            g20 = grids[20.0]
            scl = np.ascontiguousarray(scl10[::2, ::2][: g20.shape[0], : g20.shape[1]])
            scl[masks[20.0]] = SCL_NODATA
            scl_paths[d] = write_cog(root / "data" / "s2_l2a" / ds / "SCL.tif", scl, g20,
                                     SCL_NODATA, overview_resampling="nearest")


def write_s1_rasters(
    root: Path,
    seed: int,
    lc_pad: np.ndarray,
    grid: GeoBox,
    height: int,
    width: int,
    datestr: list[str],
    nodata_date: int | None,
    band_paths: dict,
    nodata_masks: dict,
) -> None:
    """Simulate and write S1 RTC VV/VH (linear gamma0 with speckle) of every date."""
    lc = lc_pad[:height, :width]
    lut = lookup_table(S1_BACKSCATTER)
    texture = 1.0 + 0.12 * smooth_field(rng_stream(seed, _RNG_S1_TEXTURE), (height, width), 6.0)
    enl = 6.0  # equivalent number of looks of the multilooked RTC product
    for d, ds in enumerate(datestr):
        rng = rng_stream(seed, _RNG_S1, d)
        change = np.ones(256, dtype=np.float32)
        change[list(_VEGETATION)] = 1.0 + 0.05 * rng.standard_normal(len(_VEGETATION))
        change[_CROP] = np.clip(1.0 + 0.3 * rng.standard_normal(), 0.5, 1.6)
        change[_WATER] = 1.0 + abs(rng.standard_normal())  # wind roughening
        mask = (_edge_mask((height, width), 1, height, width, "strip")
                if d == nodata_date else np.zeros((height, width), dtype=bool))
        nodata_masks["s1"][d] = mask
        band_paths["s1"][d] = {}
        base = texture * change[lc]
        for pi, spec in enumerate(S1.bands):
            speckle = rng.gamma(enl, 1.0 / enl, size=(height, width)).astype(np.float32)
            power = (lut[:, pi][lc] * base * speckle).astype(np.float32)
            power[mask] = np.nan
            band_paths["s1"][d][spec.name] = write_cog(
                root / "data" / "s1" / ds / f"{spec.name.lower()}.tif", power, grid, np.nan)
