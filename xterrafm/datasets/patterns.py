"""Binary material maps with a spatial structure: the building blocks of structured land cover.

Every pattern maps pixel coordinates (and per-pixel parameters gathered from the pixel's
region) to a material map ``m`` in {0, 1}: material A where ``m`` is 1, material B elsewhere.
The patterns differ in *arrangement* only: each keeps the share of material A in a range that
overlaps every other pattern's range (about 0.3–0.7), so that the per-pixel distribution of
values, and hence a window's mean, median or quantile spectrum, does not give the pattern away.

Randomness that must be evaluated per pixel without storing point sets (the dots of a random
dot pattern, which buildings of a block grid exist) comes from :func:`hash_uniform`, a
deterministic integer hash of the cell and region indices, so that every pattern is a pure
function of its inputs.
"""

from __future__ import annotations

from collections.abc import Callable

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError

with import_gate():
    import numpy as np

__all__ = ["PATTERNS", "hash_uniform", "material_map"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash_uniform(*keys: np.ndarray) -> np.ndarray:
    """Deterministic uniform numbers in [0, 1) from integer keys (a splitmix64-style hash).

    Parameters
    ----------
    *keys : ndarray of int
        Arrays of the same shape (or broadcastable); equal keys give equal numbers.

    Returns
    -------
    ndarray of float64
    """
    h = np.zeros(np.broadcast(*keys).shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            h = h ^ (np.asarray(k).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
                     + (h << np.uint64(6)) + (h >> np.uint64(2)))
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _M64
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _M64
            h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _rotate(y: np.ndarray, x: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(theta), np.sin(theta)
    return x * c + y * s, -x * s + y * c


def _stripes(y, x, p, fields):
    u, _ = _rotate(y, x, p["theta"])
    return np.mod(u / p["period"] + p["phase"], 1.0) < p["duty"]


def _wavy_stripes(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    # stripes whose phase follows a sine along them: wavelength 2.5 periods, amplitude 0.3
    wave = 0.3 * np.sin(2 * np.pi * v / (2.5 * p["period"]) + 6.283 * p["phase"])
    return np.mod(u / p["period"] + p["phase"] + wave, 1.0) < p["duty"]


def _dashes(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    row = np.floor(u / p["period"] + p["phase"])
    # each row of dashes is shifted by a random amount; dashes 2 periods long, gaps 1 period
    shift = hash_uniform(row, p["region"], 5) * 3.0
    dash = np.mod(v / p["period"] + shift, 3.0) < 2.0
    return (np.mod(u / p["period"] + p["phase"], 1.0) < np.minimum(1.0, 1.5 * p["duty"])) & dash


def _checker(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    s = p["period"] * 0.5
    return (np.floor(u / s + p["phase"]) + np.floor(v / s + p["phase"])) % 2 == 0


def _crosshatch(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    line = 0.5 * p["duty"]  # two line sets of width duty/2 each: A share about 0.3-0.5
    return (np.mod(u / p["period"], 1.0) < line) | (np.mod(v / p["period"] + p["phase"], 1.0) < line)


def _blobs(name: str):
    def pattern(y, x, p, fields):
        return fields[name] > p["threshold"]
    return pattern


def _speckle(y, x, p, fields):
    return fields["uniform"] < p["duty"]


def _regular_dots(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    s = p["period"]
    du = u / s + p["phase"]
    dv = v / s + p["phase"]
    du = (du - np.round(du)) * s
    dv = (dv - np.round(dv)) * s
    return du * du + dv * dv < p["radius"] ** 2


def _random_dots(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    s = p["period"]
    cu, cv = np.floor(u / s), np.floor(v / s)
    region = p["region"]
    hit = np.zeros(u.shape, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            i, j = cu + di, cv + dj
            pu = (i + hash_uniform(i, j, region, 1)) * s
            pv = (j + hash_uniform(i, j, region, 2)) * s
            r = p["radius"] * (0.6 + 0.8 * hash_uniform(i, j, region, 3))
            hit |= (u - pu) ** 2 + (v - pv) ** 2 < r * r
    return hit


def _blocks(y, x, p, fields):
    u, v = _rotate(y, x, p["theta"])
    s = p["period"]
    fu, fv = u / s + p["phase"], v / s + p["phase"]
    cu, cv = np.floor(fu), np.floor(fv)
    street = p["street"] / s  # street width as a fraction of the cell side
    inside = ((fu - cu) > street) & ((fv - cv) > street)
    return inside & (hash_uniform(cu, cv, p["region"], 4) < 0.85)


#: Pattern name -> function ``(y, x, params, fields) -> bool material map``.
PATTERNS: dict[str, Callable] = {
    "stripes": _stripes,
    "wavy_stripes": _wavy_stripes,
    "dashes": _dashes,
    "checker": _checker,
    "crosshatch": _crosshatch,
    "coarse_blobs": _blobs("coarse"),
    "fine_blobs": _blobs("fine"),
    "speckle": _speckle,
    "regular_dots": _regular_dots,
    "random_dots": _random_dots,
    "blocks": _blocks,
}


def material_map(pattern: str, y: np.ndarray, x: np.ndarray, params: dict[str, np.ndarray],
                 fields: dict[str, np.ndarray]) -> np.ndarray:
    """Material map of one pattern at the given pixels.

    Parameters
    ----------
    pattern : str
        A key of :data:`PATTERNS`.
    y, x : ndarray of float, shape (n,)
        Pixel-centre coordinates in pixels.
    params : dict of str -> ndarray (n,)
        Per-pixel parameters gathered from each pixel's region: ``theta`` (rad), ``period``
        (px), ``phase`` (0–1), ``duty`` (0–1), ``radius`` (px), ``street`` (px),
        ``threshold`` (standard-normal units), ``region`` (int).
    fields : dict of str -> ndarray (n,)
        Per-pixel random fields at these pixels: ``coarse`` and ``fine`` (standardised smooth
        Gaussian fields), ``uniform`` (independent uniforms).

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if pattern not in PATTERNS:
        raise UsageError(f"unknown pattern {pattern!r}; expected one of {sorted(PATTERNS)}")
    return np.asarray(PATTERNS[pattern](y, x, params, fields), dtype=bool)
