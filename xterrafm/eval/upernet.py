"""UPerNet-style segmentation decoder over intermediate ViT blocks (frozen-encoder probe).

The dense benchmarks of ViT foundation models train a UPerNet decoder on the patch tokens of
four intermediate blocks; this module gives the same structure for frozen features, as an
option beside the linear 1×1 head of :mod:`xterrafm.eval.segmentation`:

1. *Pyramid from a single-scale ViT*: the L levels (all at 1/16 of the input) are brought to
   strides 4, 8, 16 and 32 — two 2× transposed convolutions, one, none, and a 2× max-pool —
   as in the ViT adaptations of UPerNet (with fewer levels: 4, 8, 16; 8, 16; or 16 alone).
2. *UPerNet head*: a pyramid pooling module (average pools to 1, 2, 3 and 6 cells) on the
   coarsest level, 1×1 lateral convolutions, a top-down path (upsample and add), a 3×3
   convolution per level, all levels upsampled to the finest one and concatenated, a 3×3
   fusion convolution and a 1×1 classifier. Convolutions are followed by a normalisation and
   ReLU; we use group norm rather than UPerNet's batch norm, so that the probe does not depend
   on batch composition (small probe sets, a last batch of one image).

Logits are upsampled bilinearly to the label size and trained with per-pixel cross-entropy
(``ignore_index`` left out), AdamW with a cosine schedule (:mod:`xterrafm.eval.probe_training`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError
from xterrafm.eval.metrics import mean_iou
from xterrafm.eval.probe_training import train_adamw_cosine

with import_gate():
    import numpy as np
    import torch
    import torch.nn.functional as F
    from numpy.typing import ArrayLike
    from torch import nn

__all__ = ["UPerNetDecoder", "UPerNetProbe", "fit_upernet_probe"]


def _norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         _norm(cout), nn.ReLU(inplace=True))


class UPerNetDecoder(nn.Module):
    """UPerNet decoder over ``n_levels`` same-resolution ViT feature maps.

    Parameters
    ----------
    in_dim : int
        Channels D of each level.
    n_levels : int
        Number of intermediate blocks (1 to 4).
    n_classes : int
    channels : int
        Width of the decoder.
    pool_scales : tuple of int
        Output sizes of the pyramid pooling module.

    Notes
    -----
    ``forward(x)`` takes ``(N, n_levels · D, h, w)`` (levels concatenated along channels, the
    layout of :func:`xterrafm.eval.segmentation.patch_features`) and returns logits
    ``(N, n_classes, s·h, s·w)`` at the finest level: ``s = 4`` for 3 or 4 levels, 2 for two
    levels, 1 for one.
    """

    def __init__(self, in_dim: int, n_levels: int, n_classes: int, channels: int = 64,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        if not 1 <= n_levels <= 4:
            raise UsageError(f"n_levels must be 1..4, got {n_levels}")
        self.in_dim, self.n_levels = in_dim, n_levels
        # stride factors relative to the ViT grid, finest first: 4x up, 2x up, 1x, 2x down
        self.factors = {1: (1,), 2: (2, 1), 3: (4, 2, 1), 4: (4, 2, 1, 0.5)}[n_levels]
        self.resample = nn.ModuleList(self._resampler(f, in_dim) for f in self.factors)
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(in_dim, channels, 1)) for s in pool_scales)
        self.bottleneck = _conv(in_dim + len(pool_scales) * channels, channels, 3)
        self.lateral = nn.ModuleList(_conv(in_dim, channels, 1) for _ in range(n_levels - 1))
        self.fpn = nn.ModuleList(_conv(channels, channels, 3) for _ in range(n_levels - 1))
        self.fuse = _conv(n_levels * channels, channels, 3)
        self.classifier = nn.Conv2d(channels, n_classes, 1)

    @staticmethod
    def _resampler(factor: float, dim: int) -> nn.Module:
        if factor == 4:
            return nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, stride=2), _norm(dim),
                                 nn.GELU(), nn.ConvTranspose2d(dim, dim, 2, stride=2))
        if factor == 2:
            return nn.ConvTranspose2d(dim, dim, 2, stride=2)
        if factor == 1:
            return nn.Identity()
        return nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, L·D, h, w) -> logits (N, K, s·h, s·w), s the finest stride factor."""
        if x.ndim != 4 or x.shape[1] != self.n_levels * self.in_dim:
            raise UsageError(f"expected features (N, {self.n_levels * self.in_dim}, h, w); "
                             f"got {tuple(x.shape)}")
        levels = [r(t) for r, t in zip(self.resample, x.split(self.in_dim, dim=1), strict=True)]
        top = levels[-1]
        pooled = [F.interpolate(p(top), size=top.shape[-2:], mode="bilinear", align_corners=False)
                  for p in self.ppm]
        outs = [self.bottleneck(torch.cat([top, *pooled], dim=1))]
        for i in range(self.n_levels - 2, -1, -1):  # top-down: coarse to fine
            lat = self.lateral[i](levels[i])
            lat = lat + F.interpolate(outs[0], size=lat.shape[-2:], mode="bilinear",
                                      align_corners=False)
            outs.insert(0, self.fpn[i](lat))
        size = outs[0].shape[-2:]
        fused = torch.cat([outs[0]] + [F.interpolate(o, size=size, mode="bilinear",
                                                     align_corners=False) for o in outs[1:]], 1)
        return self.classifier(self.fuse(fused))


@dataclass
class UPerNetProbe:
    """A trained UPerNet decoder on standardised frozen features.

    Attributes
    ----------
    decoder : UPerNetDecoder
        In eval mode.
    mean, scale : numpy.ndarray of float32, shape (L·D,)
        Feature standardisation (training statistics).
    n_classes, ignore_index : int
    """

    decoder: UPerNetDecoder
    mean: np.ndarray
    scale: np.ndarray
    n_classes: int
    ignore_index: int

    def logits(self, features: ArrayLike, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class logits (N, K, h', w') at the decoder's output size, or upsampled to ``size``."""
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
        f = (f - torch.from_numpy(self.mean)[None, :, None, None]) / torch.from_numpy(
            self.scale)[None, :, None, None]
        with torch.no_grad():
            out = self.decoder(f)
        if size is not None and tuple(size) != tuple(out.shape[-2:]):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out

    def predict(self, features: ArrayLike, size: tuple[int, int] | None = None) -> np.ndarray:
        """Predicted class per output cell, or per pixel at ``size``; int64."""
        return self.logits(features, size).argmax(dim=1).numpy()

    def score(self, features: ArrayLike, labels: ArrayLike) -> float:
        """mIoU against labels (N, H, W) (``ignore_index`` pixels not scored)."""
        lab = np.asarray(labels)
        pred = self.predict(features, size=tuple(lab.shape[-2:]))
        return mean_iou(lab, pred, self.n_classes, ignore_index=self.ignore_index)


def fit_upernet_probe(
    features: ArrayLike, labels: ArrayLike, n_classes: int, *, n_levels: int, channels: int = 64,
    ignore_index: int = 255, epochs: int = 30, lr: float = 2e-3, weight_decay: float = 1e-2,
    batch_size: int = 16, seed: int = 0,
) -> UPerNetProbe:
    """Train a UPerNet decoder on frozen features of ``n_levels`` blocks.

    Parameters
    ----------
    features : array-like of float, shape (N, n_levels · D, h, w)
        Concatenated intermediate patch tokens
        (``patch_features(model, images, modality, layers=[...])``).
    labels : array-like of int, shape (N, H, W)
        Class indices in ``[0, n_classes)`` or ``ignore_index``.
    n_classes, n_levels, channels
        Classes, number of stacked blocks, decoder width.
    ignore_index, epochs, lr, weight_decay, batch_size, seed
        Training settings; the same inputs and seed give the same decoder.

    Returns
    -------
    UPerNetProbe
    """
    f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    lab = torch.as_tensor(np.asarray(labels)).long()
    if f.ndim != 4 or lab.ndim != 3 or f.shape[0] != lab.shape[0]:
        raise UsageError(f"need features (N, F, h, w) and labels (N, H, W) with the same N; got "
                         f"{tuple(f.shape)} and {tuple(lab.shape)}")
    if f.shape[1] % n_levels:
        raise UsageError(f"{f.shape[1]} feature channels do not split into {n_levels} levels")
    valid = lab != ignore_index
    if not valid.any():
        raise UsageError("every label equals ignore_index: nothing to train on")
    if lab[valid].min() < 0 or lab[valid].max() >= n_classes:
        raise UsageError(f"labels must lie in [0, {n_classes}) or equal ignore_index")
    if not torch.isfinite(f).all():
        raise UsageError("features hold NaN or infinite values")
    mean = f.mean(dim=(0, 2, 3))
    scale = f.std(dim=(0, 2, 3))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    fs = (f - mean[None, :, None, None]) / scale[None, :, None, None]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = UPerNetDecoder(f.shape[1] // n_levels, n_levels, n_classes, channels)
    size = tuple(lab.shape[-2:])

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(decoder(fs[idx]), size=size, mode="bilinear", align_corners=False)
        return F.cross_entropy(out, lab[idx], ignore_index=ignore_index)

    decoder.train()
    train_adamw_cosine(list(decoder.parameters()), batch_loss, f.shape[0], epochs=epochs,
                       batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed)
    decoder.eval()
    return UPerNetProbe(decoder=decoder, mean=mean.numpy().astype(np.float32),
                        scale=scale.numpy().astype(np.float32), n_classes=n_classes,
                        ignore_index=ignore_index)
