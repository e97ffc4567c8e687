"""DINO multi-crop views with modality as augmentation.

Each view is a random resized crop of the tile (the same geometry for every modality of the
tile, since they are co-registered), randomly flipped and rotated by a multiple of 90°, that
keeps a random non-empty subset of the modalities present in the tile (by default; see
:data:`xterrafm.data.subsets.MODALITY_SUBSET_RULES` for the other rules).

Optionally (:class:`MultiCropConfig` ``brightness``, ``contrast``, ``band_jitter``, ``noise``;
all 0 by default) a view's kept modalities are also jittered radiometrically, in normalised
units, with probability ``radiometric_p`` per view and modality — the multispectral
counterpart of DINO's colour jitter: without it, every view of a tile shares its mean spectrum
and matching views needs nothing but that spectrum. With probability ``grayscale_p`` a view's
modality is then replaced by its per-pixel mean over bands (every band the same: the
counterpart of DINO's random grayscale), which leaves only the spatial structure to match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.bands import get_modality
from xterrafm.data.subsets import MODALITY_SUBSET_RULES

with import_gate():
    import numpy as np
    import torch
    import torch.nn.functional as F

__all__ = [
    "MultiCropConfig",
    "choose_modalities",
    "grayscale",
    "jitter_radiometry",
    "make_views",
    "random_resized_box",
]


@dataclass(frozen=True)
class MultiCropConfig:
    """Geometry of the DINO multi-crop.

    Attributes
    ----------
    global_size, local_size : int
        Output sides in pixels of global (224) and local (96) crops.
    n_global, n_local : int
        Number of global (2) and local crops.
    global_scale, local_scale : (float, float)
        Range of the crop area as a fraction of the tile area.
    ratio : (float, float)
        Range of the crop aspect ratio (sampled log-uniformly).
    flip, rotate : bool
        Random horizontal/vertical flips and 90° rotations.
    brightness : float
        Standard deviation of a shift added to all bands of a view (normalised units).
    contrast : float
        Half-width of the uniform range ``[1 - c, 1 + c]`` of a gain applied to a view's
        deviations from its per-band mean.
    band_jitter : float
        Standard deviation of per-band gains ``1 + N(0, j)`` (changes the spectrum's shape).
    noise : float
        Standard deviation of additive per-pixel Gaussian noise.
    radiometric_p : float
        Probability that a view's modality is jittered at all (0.8, as DINO's colour jitter).
    grayscale_p : float
        Probability that a view's modality has every band replaced by the per-pixel mean over
        its bands (0: off; DINO's random grayscale uses 0.2).
    modality_subsets : str
        Which modalities each view keeps, one of
        :data:`xterrafm.data.subsets.MODALITY_SUBSET_RULES` ("uniform").
    """

    global_size: int = 224
    local_size: int = 96
    n_global: int = 2
    n_local: int = 6
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    rotate: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    band_jitter: float = 0.0
    noise: float = 0.0
    radiometric_p: float = 0.8
    grayscale_p: float = 0.0
    modality_subsets: str = "uniform"

    @property
    def radiometric(self) -> bool:
        """Whether any radiometric jitter is configured."""
        return any(v > 0 for v in (self.brightness, self.contrast, self.band_jitter, self.noise))

    def __post_init__(self) -> None:
        if self.n_global < 1:
            raise ValueError("n_global must be >= 1")
        if self.n_global + self.n_local < 2:
            raise ValueError("DINO needs at least two views")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi <= 1, got {(lo, hi)}")
        for name in ("brightness", "contrast", "band_jitter", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("radiometric_p", "grayscale_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.contrast >= 1:
            raise ValueError(f"contrast must be < 1 (gains stay positive), got {self.contrast}")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {(lo, hi)}")
        if self.modality_subsets not in MODALITY_SUBSET_RULES:
            raise ValueError(f"modality_subsets must be one of {list(MODALITY_SUBSET_RULES)}, "
                             f"got {self.modality_subsets!r}")


def random_resized_box(
    rng: np.random.Generator, height: int, width: int, scale: Sequence[float],
    ratio: Sequence[float],
) -> tuple[int, int, int, int]:
    """Draw a crop box ``(y0, x0, h, w)`` covering ``scale`` of the area with aspect ``ratio``.

    Falls back to the largest centred box of the clipped aspect ratio after 10 failed draws.
    """
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            return y0, x0, h, w
    r = min(max(width / height, ratio[0]), ratio[1])
    if width / height < r:
        w, h = width, int(round(width / r))
    else:
        h, w = height, int(round(height * r))
    return (height - h) // 2, (width - w) // 2, h, w


def choose_modalities(rng: np.random.Generator, present: Sequence[bool],
                      rule: str = "uniform") -> np.ndarray:
    """The modalities one view keeps: by default a random non-empty subset of the present ones.

    Parameters
    ----------
    present : sequence of bool, length M
    rule : str
        ``"uniform"`` (uniform over the non-empty subsets), ``"all"`` or ``"single"`` (one
        present modality, uniformly); see :data:`MODALITY_SUBSET_RULES`.

    Returns
    -------
    ndarray of bool, shape (M,)
    """
    idx = np.flatnonzero(np.asarray(present, dtype=bool))
    if idx.size == 0:
        raise ValueError("a view needs at least one present modality")
    keep = np.zeros(len(present), dtype=bool)
    if rule == "all":
        keep[idx] = True
        return keep
    if rule == "single":
        keep[idx[int(rng.integers(0, idx.size))]] = True
        return keep
    if rule != "uniform":
        raise ValueError(f"unknown modality subset rule {rule!r}; expected 'uniform', 'all' "
                         "or 'single'")
    mask = int(rng.integers(1, 2 ** idx.size))
    for bit, i in enumerate(idx):
        keep[i] = bool(mask >> bit & 1)
    return keep


def _crop(
    x: torch.Tensor, box: tuple[int, int, int, int], size: int, flip_h: bool, flip_v: bool, k: int
) -> torch.Tensor:
    y0, x0, h, w = box
    patch = x[None, :, y0 : y0 + h, x0 : x0 + w]
    out = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=True)[0]
    if flip_h:
        out = out.flip(-1)
    if flip_v:
        out = out.flip(-2)
    if k:
        out = torch.rot90(out, k, dims=(-2, -1))
    return out


def jitter_radiometry(rng: np.random.Generator, x: torch.Tensor,
                      config: MultiCropConfig) -> torch.Tensor:
    """Radiometric jitter of one view of one modality (see the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
    x : Tensor (C, H, W)
        Normalised pixels of the view.
    config : MultiCropConfig

    Returns
    -------
    Tensor (C, H, W)
        ``x`` itself when the draw skips this view, else a jittered copy.
    """
    if not config.radiometric or rng.random() >= config.radiometric_p:
        return x
    c = x.shape[0]
    mean = x.mean(dim=(-2, -1), keepdim=True)
    gain = 1.0 + rng.uniform(-config.contrast, config.contrast) if config.contrast else 1.0
    out = mean + (x - mean) * gain
    if config.band_jitter:
        bands = 1.0 + rng.normal(0.0, config.band_jitter, size=c).astype(np.float32)
        out = out * torch.from_numpy(bands)[:, None, None]
    if config.brightness:
        out = out + float(rng.normal(0.0, config.brightness))
    if config.noise:
        out = out + config.noise * torch.from_numpy(
            rng.standard_normal(tuple(x.shape), dtype=np.float32))
    return out


def grayscale(rng: np.random.Generator, x: torch.Tensor, p: float) -> torch.Tensor:
    """With probability ``p``, every band of a view (C, H, W) set to the per-pixel band mean."""
    if p <= 0 or rng.random() >= p:
        return x
    return x.mean(dim=0, keepdim=True).expand_as(x).clone()


def make_views(
    rng: np.random.Generator,
    tile: Mapping[str, torch.Tensor],
    modalities: Sequence[str],
    present: Sequence[bool],
    config: MultiCropConfig,
) -> dict[str, object]:
    """Cut the global and local views of one tile.

    Parameters
    ----------
    rng : numpy.random.Generator
        Per-sample randomness (seeded by seed, epoch, tile and occurrence).
    tile : mapping modality -> Tensor (C, H, W)
        Normalised tile (NaN already 0) for the present modalities.
    modalities : sequence of str, length M
        All modalities of the dataset, in batch order.
    present : sequence of bool, length M
        Which modalities the tile holds.
    config : MultiCropConfig

    Returns
    -------
    dict
        ``"global"``: {modality: Tensor (G, C, S, S)}, ``"global_keep"``: bool Tensor (G, M),
        ``"local"`` / ``"local_keep"`` likewise with the local size (absent when
        ``n_local == 0``). Modalities not kept in a view are zeros there.
    """
    any_tile = next(iter(tile.values()))
    height, width = int(any_tile.shape[-2]), int(any_tile.shape[-1])
    out: dict[str, object] = {}
    groups = [("global", config.n_global, config.global_size, config.global_scale)]
    if config.n_local:
        groups.append(("local", config.n_local, config.local_size, config.local_scale))
    rule_of = {"global": config.modality_subsets, "local": config.modality_subsets}
    if config.modality_subsets == "global_all":
        rule_of = {"global": "all", "local": "uniform"}
    for name, n, size, scale in groups:
        stacks = {
            m: torch.zeros(n, get_modality(m).n_bands, size, size) for m in modalities
        }
        keep = np.zeros((n, len(modalities)), dtype=bool)
        for v in range(n):
            box = random_resized_box(rng, height, width, scale, config.ratio)
            flip_h = bool(config.flip and rng.random() < 0.5)
            flip_v = bool(config.flip and rng.random() < 0.5)
            k = int(rng.integers(0, 4)) if config.rotate else 0
            keep[v] = choose_modalities(rng, present, rule_of[name])
            for i, m in enumerate(modalities):
                if keep[v, i]:
                    view = _crop(tile[m], box, size, flip_h, flip_v, k)
                    view = jitter_radiometry(rng, view, config)
                    stacks[m][v] = grayscale(rng, view, config.grayscale_p)
        out[name] = stacks
        out[f"{name}_keep"] = torch.from_numpy(keep)
    return out
