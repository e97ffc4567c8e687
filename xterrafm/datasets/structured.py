"""Structured synthetic land cover: classes that a window's spectrum cannot tell apart.

In :func:`xterrafm.datasets.make_synthetic_scene` every class has its own spectrum, so a window's
mean spectrum nearly gives its class away. Here the class of a region decides only *how* two
materials are arranged (stripes, dots on a lattice or at random, blobs, a block grid...), and
for two classes what Sentinel-1 sees under the same Sentinel-2 arrangement:

- every region draws its two materials at random from one pool of spectra (the WorldCover
  signatures of :mod:`xterrafm.datasets.signatures`, snow excluded), with random gains,
  whatever its class;
- every pattern keeps the share of material A in an overlapping range (about 0.3–0.7), so the
  per-pixel value distribution (mean, median, quantiles) carries little class information;
- ``herbaceous wetland`` repeats the Sentinel-2 arrangement of ``grassland`` but is flooded in
  Sentinel-1 (material B backscatters like open water), and ``mangroves`` repeats ``tree cover``
  with double-bounce backscatter on material A: only the Sentinel-1 context separates them.

Class shares follow a long tail (:data:`STRUCTURED_CLASSES`, about 27 % down to 1 %), assigned
region by region so that each scene matches them closely. Regions are warped Voronoi cells of a
jittered grid (``region_px`` apart). The class codes are ESA WorldCover codes so that the cubes
plug into :class:`xterrafm.data.TileDataset`; the patterns are not meant to look like those covers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

from xterrafm._imports import import_gate
from xterrafm.bands import S1, S2_L2A
from xterrafm.datasets.fields import smooth_field
from xterrafm.datasets.patterns import material_map
from xterrafm.datasets.signatures import S1_BACKSCATTER, S2_REFLECTANCE
from xterrafm.errors import UsageError

with import_gate():
    import numpy as np
    import xarray as xr

__all__ = ["STRUCTURED_CLASSES", "StructuredClass", "StructuredScene", "make_structured_scene",
           "write_structured_training_cube"]


@dataclass(frozen=True)
class StructuredClass:
    """One class of the structured land cover.

    Attributes
    ----------
    code : int
        ESA WorldCover code used as the label.
    name : str
        WorldCover name of the code.
    share : float
        Target share of the scene's pixels.
    pattern : str
        Arrangement of the two materials (a key of :data:`xterrafm.datasets.patterns.PATTERNS`).
    s1 : str
        ``"plain"``, ``"flooded"`` (material B backscatters like water) or ``"double_bounce"``
        (material A: VV x 4, VH x 2).
    """

    code: int
    name: str
    share: float
    pattern: str
    s1: str = "plain"


#: The classes, most common first (shares sum to 1; the two rarest cover 1 % each).
STRUCTURED_CLASSES: tuple[StructuredClass, ...] = (
    StructuredClass(40, "cropland", 0.27, "stripes"),
    StructuredClass(10, "tree cover", 0.20, "coarse_blobs"),
    StructuredClass(30, "grassland", 0.15, "wavy_stripes"),
    StructuredClass(20, "shrubland", 0.11, "random_dots"),
    StructuredClass(50, "built-up", 0.085, "blocks"),
    StructuredClass(60, "bare / sparse vegetation", 0.065, "dashes"),
    StructuredClass(90, "herbaceous wetland", 0.045, "wavy_stripes", "flooded"),
    StructuredClass(100, "moss and lichen", 0.035, "regular_dots"),
    StructuredClass(95, "mangroves", 0.02, "coarse_blobs", "double_bounce"),
    StructuredClass(70, "snow and ice", 0.01, "checker"),
    StructuredClass(80, "permanent water bodies", 0.01, "crosshatch"),
)

#: Pool of material spectra (WorldCover signatures without snow, whose reflectance dwarfs the rest).
_POOL = tuple(c for c in S2_REFLECTANCE if c != 70)
#: Period ranges (px) of the periodic patterns.
_PERIOD = {"stripes": (6.0, 10.0), "wavy_stripes": (6.0, 10.0), "dashes": (6.0, 10.0), "checker": (8.0, 14.0), "crosshatch": (8.0, 12.0),
           "regular_dots": (7.0, 10.0), "random_dots": (7.0, 10.0), "blocks": (10.0, 14.0)}
#: Default material pairs (WorldCover codes of the spectra): one pair drawn per region.
DEFAULT_MATERIAL_PAIRS: tuple[tuple[int, int], ...] | None = ((10, 60),)
_TEN_M = [i for i, b in enumerate(S2_L2A.bands) if b.resolution == 10]
_RNG_REGIONS, _RNG_CLASSES, _RNG_PARAMS, _RNG_FIELDS, _RNG_DATE = 1, 2, 3, 4, 10


@dataclass(frozen=True)
class StructuredScene:
    """A structured scene in memory.

    Attributes
    ----------
    cube : xarray.Dataset
        Training-cube layout (:mod:`xterrafm.data.cube`): ``s2_l2a`` reflectance and ``s1``
        linear gamma0, dims ``(<m>_time, <m>_band, y, x)`` float32, and ``landcover`` (y, x)
        uint8 WorldCover codes.
    landcover : ndarray (height, width) uint8
    regions : ndarray (height, width) int32
        Region index of every pixel (the unit of the class draw; for clustered statistics).
    region_class : ndarray (n_regions,) uint8
        Class code of each region.
    seed : int
    """

    cube: xr.Dataset
    landcover: np.ndarray
    regions: np.ndarray
    region_class: np.ndarray
    seed: int

    def class_shares(self) -> dict[int, float]:
        """Pixel share of every class code in the scene."""
        values, counts = np.unique(self.landcover, return_counts=True)
        return {int(v): float(c) / self.landcover.size for v, c in zip(values, counts, strict=True)}


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, 17, *tags])


def _regions(rng: np.random.Generator, shape: tuple[int, int], spacing: float) -> np.ndarray:
    """Warped Voronoi cells of a jittered grid: region index per pixel, 0..n-1."""
    h, w = shape
    ny, nx = int(np.ceil(h / spacing)) + 1, int(np.ceil(w / spacing)) + 1
    sy = (np.arange(ny)[:, None] + rng.uniform(0.15, 0.85, (ny, nx))) * spacing
    sx = (np.arange(nx)[None, :] + rng.uniform(0.15, 0.85, (ny, nx))) * spacing
    warp_y = smooth_field(rng, shape, spacing / 3) * (0.15 * spacing)
    warp_x = smooth_field(rng, shape, spacing / 3) * (0.15 * spacing)
    out = np.empty(shape, dtype=np.int64)
    cols = np.arange(w, dtype=np.float32) + 0.5
    for r0 in range(0, h, 128):
        rows = np.arange(r0, min(r0 + 128, h), dtype=np.float32)[:, None] + 0.5
        yy = rows + warp_y[r0:r0 + 128]
        xx = cols[None, :] + warp_x[r0:r0 + 128]
        ci = np.floor(yy / spacing).astype(np.int64)
        cj = np.floor(xx / spacing).astype(np.int64)
        best = np.full(yy.shape, np.inf, dtype=np.float32)
        idx = np.zeros(yy.shape, dtype=np.int64)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                i = np.clip(ci + di, 0, ny - 1)
                j = np.clip(cj + dj, 0, nx - 1)
                d = (yy - sy[i, j]) ** 2 + (xx - sx[i, j]) ** 2
                closer = d < best
                best[closer] = d[closer]
                idx[closer] = (i * nx + j)[closer]
        out[r0:r0 + 128] = idx
    _, compact = np.unique(out, return_inverse=True)
    return compact.reshape(shape).astype(np.int32)


def _assign_classes(rng: np.random.Generator, regions: np.ndarray,
                    classes: tuple[StructuredClass, ...]) -> np.ndarray:
    """Class index of every region, drawn so that the pixel shares follow ``share``."""
    area = np.bincount(regions.ravel()).astype(np.float64)
    order = list(rng.permutation(area.size))
    total = area.sum()
    out = np.full(area.size, -1, dtype=np.int64)
    by_share = sorted(range(len(classes)), key=lambda k: classes[k].share)
    for k in by_share[:-1]:  # rarest first; the most common class takes what is left
        target, acc = classes[k].share * total, 0.0
        while order and acc + 0.5 * area[order[-1]] < target:
            r = order.pop()
            out[r] = k
            acc += area[r]
    out[out < 0] = by_share[-1]
    return out


def _region_params(rng: np.random.Generator, region_pattern: list[str]) -> dict[str, np.ndarray]:
    n = len(region_pattern)
    lo = np.array([_PERIOD.get(p, (8.0, 8.0))[0] for p in region_pattern])
    hi = np.array([_PERIOD.get(p, (8.0, 8.0))[1] for p in region_pattern])
    period = rng.uniform(lo, hi)
    duty = rng.uniform(0.35, 0.65, n)
    normal = NormalDist()
    return {
        "theta": rng.uniform(0.0, np.pi, n),
        "period": period,
        "phase": rng.uniform(0.0, 1.0, n),
        "duty": duty,
        "radius": period * np.sqrt(rng.uniform(0.3, 0.5, n) / np.pi),
        "street": rng.uniform(2.0, 3.0, n),
        "threshold": np.array([normal.inv_cdf(1.0 - d) for d in duty]),
        "region": np.arange(n),
    }


def _materials(rng: np.random.Generator, n: int, pairs: Sequence[tuple[int, int]] | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, 2) into the pool spectra of materials A and B of each region.

    ``pairs`` None: any two pool materials with a visible 10 m contrast; else one of the
    given (code, code) pairs, in random order.
    """
    spectra = np.array([S2_REFLECTANCE[c] for c in _POOL])
    if pairs is not None:
        bad = [c for p in pairs for c in p if c not in _POOL]
        if bad or not pairs:
            raise UsageError(f"material pairs must be non-empty pairs of codes in {_POOL}")
        idx = np.array([[_POOL.index(a), _POOL.index(b)] for a, b in pairs])
        chosen = idx[rng.integers(0, len(idx), n)]
        swap = rng.random(n) < 0.5
        chosen[swap] = chosen[swap][:, ::-1]
        return chosen, spectra
    contrast = np.abs(spectra[:, None, _TEN_M] - spectra[None, :, _TEN_M]).mean(-1)
    a = rng.integers(0, len(_POOL), n)
    b = np.empty(n, dtype=np.int64)
    for r in range(n):
        ok = np.flatnonzero(contrast[a[r]] >= 0.03)
        b[r] = ok[rng.integers(0, ok.size)]
    return np.stack([a, b], axis=1), spectra


def make_structured_scene(
    *, seed: int = 0, size: int = 1024, n_dates: int = 1, region_px: float = 64.0,
    classes: tuple[StructuredClass, ...] = STRUCTURED_CLASSES,
    material_pairs: Sequence[tuple[int, int]] | None = DEFAULT_MATERIAL_PAIRS,
    gain_spread: float = 0.15,
    band_spread: float = 0.04,
    native_resolution: bool = False,
) -> StructuredScene:
    """Draw a structured scene (S2 L2A + S1 + land cover) in memory.

    Parameters
    ----------
    seed : int
        Another seed is another landscape (held-out scenes).
    size : int
        Side of the square scene in 10 m pixels (>= 96).
    n_dates : int
        Dates; each has its own gain, noise and speckle.
    region_px : float
        Spacing of the region seeds in pixels (region diameter about ``region_px``).
    classes : tuple of StructuredClass

    Returns
    -------
    StructuredScene
    """
    if not isinstance(size, (int, np.integer)) or size < 96:
        raise UsageError(f"size must be an integer >= 96 px, got {size!r}")
    if n_dates < 1:
        raise UsageError(f"n_dates must be >= 1, got {n_dates}")
    if region_px < 16:
        raise UsageError(f"region_px must be >= 16, got {region_px}")
    if abs(sum(c.share for c in classes) - 1.0) > 1e-6:
        raise UsageError("class shares must sum to 1")
    shape = (size, size)
    regions = _regions(_rng(seed, _RNG_REGIONS), shape, float(region_px))
    region_cls = _assign_classes(_rng(seed, _RNG_CLASSES), regions, classes)
    prng = _rng(seed, _RNG_PARAMS)
    params = _region_params(prng, [classes[k].pattern for k in region_cls])
    mats, spectra = _materials(prng, region_cls.size, material_pairs)
    n = region_cls.size
    gains = (prng.uniform(1 - gain_spread, 1 + gain_spread, (n, 2))[:, :, None]
             * np.clip(prng.normal(1.0, band_spread, (n, 2, 12)), 0.3, None))
    frng = _rng(seed, _RNG_FIELDS)
    fields = {"coarse": smooth_field(frng, shape, 3.0), "fine": smooth_field(frng, shape, 1.2),
              "uniform": frng.random(shape, dtype=np.float32)}
    m = np.zeros(shape, dtype=bool)
    cls_px = region_cls[regions]
    for k, c in enumerate(classes):
        where = np.nonzero(cls_px == k)
        if where[0].size == 0:
            continue
        rid = regions[where]
        px = {name: v[rid] for name, v in params.items()}
        m[where] = material_map(c.pattern, where[0] + 0.5, where[1] + 0.5, px,
                                {name: f[where] for name, f in fields.items()})
    landcover = np.array([c.code for c in classes], dtype=np.uint8)[cls_px]
    s2 = _s2(seed, n_dates, m, regions, mats, spectra, gains, native_resolution)
    s1 = _s1(seed, n_dates, m, regions, mats, region_cls, classes, frng)
    cube = _as_cube(s2, s1, landcover)
    return StructuredScene(cube=cube, landcover=landcover, regions=regions,
                           region_class=np.array([classes[k].code for k in region_cls], np.uint8),
                           seed=int(seed))


def _s2(seed, n_dates, m, regions, mats, spectra, gains, native_resolution) -> np.ndarray:
    shape = m.shape
    a = spectra[mats[:, 0]] * gains[:, 0]  # (n, 12)
    b = spectra[mats[:, 1]] * gains[:, 1]
    light = 1.0 + 0.04 * smooth_field(_rng(seed, _RNG_FIELDS, 1), shape, 24.0)
    out = np.empty((n_dates, 12, *shape), dtype=np.float32)
    mf = m.astype(np.float32)
    for d in range(n_dates):
        rng = _rng(seed, _RNG_DATE, d)
        gain = np.float32(1.0 + 0.02 * rng.standard_normal())
        for bi, spec in enumerate(S2_L2A.bands):
            bb = b[:, bi].astype(np.float32)[regions]
            v = (bb + mf * (a[:, bi].astype(np.float32)[regions] - bb)) * light * gain
            v += rng.standard_normal(shape, dtype=np.float32) * (0.003 + 0.02 * v)
            f = int(spec.resolution // 10)
            if f > 1 and native_resolution:  # 20 m / 60 m bands: block means seen on the 10 m grid
                py, px = -shape[0] % f, -shape[1] % f
                padded = np.pad(v, ((0, py), (0, px)), mode="edge")
                blocks = padded.reshape(padded.shape[0] // f, f, -1, f).mean(axis=(1, 3))
                v = np.repeat(np.repeat(blocks, f, axis=0), f, axis=1)[:shape[0], :shape[1]]
            out[d, bi] = np.clip(v, 1e-4, None)
    return out


def _s1(seed, n_dates, m, regions, mats, region_cls, classes, frng) -> np.ndarray:
    shape = m.shape
    table = np.array([S1_BACKSCATTER[c] for c in _POOL], dtype=np.float32)
    rng = _rng(seed, _RNG_PARAMS, 1)
    n = region_cls.size
    sa = table[mats[:, 0]] * rng.uniform(0.8, 1.25, (n, 1)).astype(np.float32)
    sb = table[mats[:, 1]] * rng.uniform(0.8, 1.25, (n, 1)).astype(np.float32)
    effect = np.array([classes[k].s1 for k in region_cls])
    sb[effect == "flooded"] = np.asarray(S1_BACKSCATTER[80], np.float32)
    sa[effect == "double_bounce"] *= np.array([4.0, 2.0], np.float32)
    texture = 1.0 + 0.1 * smooth_field(frng, shape, 6.0)
    out = np.empty((n_dates, 2, *shape), dtype=np.float32)
    for d in range(n_dates):
        drng = _rng(seed, _RNG_DATE, d, 1)
        for p in range(2):
            base = np.where(m, sa[:, p][regions], sb[:, p][regions]) * texture
            out[d, p] = base * drng.gamma(6.0, 1.0 / 6.0, size=shape).astype(np.float32)
    return out


def _as_cube(s2: np.ndarray, s1: np.ndarray, landcover: np.ndarray) -> xr.Dataset:
    h, w = landcover.shape
    coords = {"y": np.arange(h) * -10.0 + 5e6 - 5.0, "x": np.arange(w) * 10.0 + 6e5 + 5.0}
    return xr.Dataset(
        {
            "s1": (("s1_time", "s1_band", "y", "x"), s1),
            "s2_l2a": (("s2_l2a_time", "s2_l2a_band", "y", "x"), s2),
            "landcover": (("y", "x"), landcover),
        },
        coords={**coords, "s1_band": [b.name for b in S1.bands],
                "s2_l2a_band": [b.name for b in S2_L2A.bands]},
        attrs={"description": "xterrafm structured synthetic land cover"},
    )


def write_structured_training_cube(path: str | os.PathLike, *, chunk_px: int = 256,
                                   **scene_kwargs) -> Path:
    """Draw a structured scene and write its training cube to Zarr (reused when present).

    Parameters
    ----------
    path : path-like
        The ``.zarr`` folder; written under a temporary name and renamed, so a cube found
        there is complete.
    chunk_px : int
        Spatial chunk side.
    **scene_kwargs
        Passed to :func:`make_structured_scene`.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if (path / "zarr.json").exists():
        return path
    scene = make_structured_scene(**scene_kwargs)
    ds = scene.cube
    ds = ds.assign(region=(("y", "x"), scene.regions))
    enc = {}
    for v in ds.data_vars:  # one chunk per date and all bands, chunk_px in y and x
        enc[v] = {"chunks": tuple(1 if d.endswith("_time") else ds.sizes[d] if d.endswith("_band")
                                  else min(chunk_px, ds.sizes[d]) for d in ds[v].dims)}
    tmp = path.with_name(path.name + ".tmp")
    ds.to_zarr(tmp, mode="w", encoding=enc, consolidated=False, zarr_format=3)
    os.replace(tmp, path)
    return path
