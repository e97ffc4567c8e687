"""Segmentation probe: a linear head (1×1 convolution) on frozen patch tokens, scored by mIoU.

``head="upernet"`` trains a UPerNet-style decoder over the stacked intermediate blocks instead
(:mod:`xterrafm.eval.upernet`), the decoder of the dense benchmarks.

Features are TerraFM patch tokens on the patch grid, shape (N, D, h, w) with ``h = H / 16``,
optionally several blocks' tokens concatenated along channels (``model.intermediate``; the
paper's dense protocol uses blocks 3, 5, 7 and 11 of ViT-B). The head maps each token to class
logits; the logits are upsampled bilinearly to the label resolution and trained with
per-pixel cross-entropy, pixels equal to ``ignore_index`` left out. Labels may be given per
pixel (N, H, W) with H, W multiples of h, w, or per patch (N, h, w).

Training defaults: features standardised per channel with the training statistics, zero-initialised
head, AdamW (learning rate 1e-2, weight decay 1e-4), 50 epochs over batches of 16 images,
cosine decay; shuffling seeded by ``seed`` so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.eval.metrics import mean_iou
from xterrafm.eval.probe_training import train_adamw_cosine

with import_gate():
    import numpy as np
    import torch
    import torch.nn.functional as F
    from numpy.typing import ArrayLike

__all__ = [
    "IGNORE_INDEX",
    "SegmentationProbe",
    "fit_segmentation_probe",
    "patch_features",
    "segmentation_miou",
]

#: Default label value that is not scored or trained on.
IGNORE_INDEX = 255


def _tensor(a: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
    t = a.detach().cpu() if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t.to(dtype)


@torch.no_grad()
def patch_features(
    model: torch.nn.Module,
    images: ArrayLike,
    modality: str,
    layers: int | Sequence[int] | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """Frozen patch tokens of normalised images for a segmentation probe.

    Parameters
    ----------
    model : xterrafm.TerraFM
        Encoder in eval mode.
    images : array-like of float, shape (N, C, H, W)
        Normalised images (``xterrafm.normalize``), no NaN; H, W multiples of 16.
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``.
    layers : int or sequence of int, optional
        ``None``: the final patch tokens (after the last norm). Otherwise the blocks passed to
        ``model.intermediate`` (an int n: the last n blocks), concatenated along channels.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    torch.Tensor of float32, shape (N, D · n_layers, H/16, W/16)
    """
    x = _tensor(images, torch.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(x.shape)}")
    device = next(model.parameters()).device
    out = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(device)
        if layers is None:
            feats = model.forward_features(batch, modality=modality)["patch"]
        else:
            feats = torch.cat(model.intermediate(batch, modality=modality, layers=layers), dim=1)
        out.append(feats.float().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class SegmentationProbe:
    """A trained 1×1-convolution head: ``logits = W · (f - mean) / scale + b`` per token.

    Attributes
    ----------
    weight : numpy.ndarray of float32, shape (K, F)
    bias : numpy.ndarray of float32, shape (K,)
    mean, scale : numpy.ndarray of float32, shape (F,)
    n_classes : int
    ignore_index : int
    """

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_classes: int
    ignore_index: int

    def logits(self, features: ArrayLike, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class logits (N, K, h, w), or bilinearly upsampled to ``size`` = (H, W)."""
        f = _tensor(features, torch.float32)
        if f.ndim != 4 or f.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"expected features (N, {self.weight.shape[1]}, h, w); got {tuple(f.shape)}"
            )
        return _head_logits(
            f, torch.from_numpy(self.mean), torch.from_numpy(self.scale),
            torch.from_numpy(self.weight), torch.from_numpy(self.bias), size,
        )

    def predict(self, features: ArrayLike, size: tuple[int, int] | None = None) -> np.ndarray:
        """Predicted class per token, or per pixel at ``size``; int64 (N, h, w) or (N, H, W)."""
        with torch.no_grad():
            return self.logits(features, size).argmax(dim=1).numpy()

    def score(self, features: ArrayLike, labels: ArrayLike) -> float:
        """mIoU against labels (N, H, W) or (N, h, w) (``ignore_index`` pixels not scored)."""
        lab = np.asarray(labels)
        pred = self.predict(features, size=tuple(lab.shape[-2:]))
        return mean_iou(lab, pred, self.n_classes, ignore_index=self.ignore_index)


def _head_logits(f, mean, scale, weight, bias, size):
    f = (f - mean[None, :, None, None]) / scale[None, :, None, None]
    logits = torch.einsum("nfhw,kf->nkhw", f, weight) + bias[None, :, None, None]
    if size is not None and tuple(size) != tuple(logits.shape[-2:]):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits


def fit_segmentation_probe(
    features: ArrayLike,
    labels: ArrayLike,
    n_classes: int,
    *,
    ignore_index: int = IGNORE_INDEX,
    epochs: int = 50,
    lr: float | None = None,
    weight_decay: float | None = None,
    batch_size: int = 16,
    standardize: bool = True,
    seed: int = 0,
    head: str = "linear",
    n_levels: int | None = None,
    channels: int = 64,
):
    """Train a segmentation head on frozen patch features: linear (default) or UPerNet.

    Parameters
    ----------
    features : array-like of float, shape (N, F, h, w)
        Patch features (`patch_features`).
    labels : array-like of int, shape (N, H, W) or (N, h, w)
        Class indices in ``[0, n_classes)`` or ``ignore_index``; H, W multiples of h, w.
    n_classes : int
        Number of classes.
    ignore_index : int
        Label value that is not trained on (and not scored).
    epochs, lr, weight_decay, batch_size, standardize, seed
        See the module docstring.
    head : {"linear", "upernet"}
        ``"upernet"``: :func:`xterrafm.eval.upernet.fit_upernet_probe` (features always
        standardised). ``lr`` and ``weight_decay`` default to each head's own values
        (linear: 1e-2 and 1e-4).
    n_levels : int, optional
        Blocks stacked along the channels of ``features`` (required for UPerNet).
    channels : int
        Decoder width (UPerNet only).

    Returns
    -------
    SegmentationProbe or UPerNetProbe
    """
    if head == "upernet":
        from xterrafm.eval.upernet import fit_upernet_probe

        if n_levels is None:
            raise ValueError("head='upernet' needs n_levels: the number of blocks whose tokens "
                             "are stacked along the channels of features")
        extra = {k: v for k, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None}
        return fit_upernet_probe(features, labels, n_classes, n_levels=n_levels, channels=channels,
                                 ignore_index=ignore_index, epochs=epochs,
                                 batch_size=batch_size, seed=seed, **extra)
    if head != "linear":
        raise ValueError(f"head must be 'linear' or 'upernet', got {head!r}")
    lr = 1e-2 if lr is None else lr
    weight_decay = 1e-4 if weight_decay is None else weight_decay
    f = _tensor(features, torch.float32)
    lab = _tensor(labels, torch.int64)
    if f.ndim != 4 or lab.ndim != 3 or f.shape[0] != lab.shape[0]:
        raise ValueError(
            f"need features (N, F, h, w) and labels (N, H, W) with the same N; got "
            f"{tuple(f.shape)} and {tuple(lab.shape)}"
        )
    h, w = f.shape[-2:]
    big_h, big_w = lab.shape[-2:]
    if big_h % h or big_w % w:
        raise ValueError(f"label size {(big_h, big_w)} is not a multiple of the grid {(h, w)}")
    valid = lab != ignore_index
    if not valid.any():
        raise ValueError("every label equals ignore_index: nothing to train on")
    if lab[valid].min() < 0 or lab[valid].max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}) or equal ignore_index")
    if not torch.isfinite(f).all():
        raise ValueError("features hold NaN or infinite values")

    if standardize:
        mean = f.mean(dim=(0, 2, 3))
        scale = f.std(dim=(0, 2, 3))
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    else:
        mean, scale = torch.zeros(f.shape[1]), torch.ones(f.shape[1])
    weight = torch.zeros(n_classes, f.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        logits = _head_logits(f[idx], mean, scale, weight, bias, (big_h, big_w))
        return F.cross_entropy(logits, lab[idx], ignore_index=ignore_index)

    train_adamw_cosine([weight, bias], batch_loss, f.shape[0], epochs=epochs,
                       batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed)
    return SegmentationProbe(
        weight=weight.detach().numpy().copy(),
        bias=bias.detach().numpy().copy(),
        mean=mean.numpy().astype(np.float32),
        scale=scale.numpy().astype(np.float32),
        n_classes=n_classes,
        ignore_index=ignore_index,
    )


def segmentation_miou(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    n_classes: int,
    **fit_kwargs,
) -> float:
    """Fit a segmentation probe on the training set and return its mIoU on the test set."""
    probe = fit_segmentation_probe(train_features, train_labels, n_classes, **fit_kwargs)
    return probe.score(test_features, test_labels)
