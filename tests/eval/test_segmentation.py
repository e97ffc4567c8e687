"""Segmentation probe on known answers and on a tiny TerraFM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xterrafm.eval.segmentation import (
    IGNORE_INDEX,
    fit_segmentation_probe,
    patch_features,
    segmentation_miou,
)


def _patch_dataset(n: int, seed: int, n_classes: int = 3, grid: int = 4, dim: int = 8):
    """Patch labels plus features that encode them (one-hot, noisy) on a (grid x grid) grid."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=(n, grid, grid))
    onehot = np.eye(dim)[labels] * 4.0  # (n, g, g, dim)
    feats = onehot + rng.normal(size=onehot.shape) * 0.3
    return feats.transpose(0, 3, 1, 2).astype(np.float32), labels


def test_separable_patch_labels_give_full_miou():
    xtr, ytr = _patch_dataset(24, seed=0)
    xte, yte = _patch_dataset(12, seed=1)
    assert segmentation_miou(xtr, ytr, xte, yte, n_classes=3, epochs=30) == pytest.approx(1.0)


def test_pixel_labels_are_scored_on_upsampled_logits():
    xtr, ytr = _patch_dataset(24, seed=0)
    # one class per image column half, so each 16-px patch is uniform and borders fall
    # between patches: bilinear upsampling keeps every pixel on its own patch's side
    ytr = np.broadcast_to((np.arange(4) >= 2)[None, None, :], ytr.shape).astype(np.int64)
    xtr = np.eye(8)[ytr].transpose(0, 3, 1, 2).astype(np.float32) * 4
    pix = np.repeat(np.repeat(ytr, 16, axis=1), 16, axis=2)
    pix[:, :3] = IGNORE_INDEX  # an unlabelled band, not scored
    probe = fit_segmentation_probe(xtr, pix, n_classes=2, epochs=30)
    assert probe.predict(xtr, size=(64, 64)).shape == (24, 64, 64)
    assert probe.score(xtr, pix) == pytest.approx(1.0)


def test_shuffled_patch_labels_score_low_and_seed_reproduces():
    xtr, ytr = _patch_dataset(24, seed=0)
    xte, yte = _patch_dataset(12, seed=1)
    rng = np.random.default_rng(3)
    noise_tr, noise_te = rng.integers(0, 3, ytr.shape), rng.integers(0, 3, yte.shape)
    miou = segmentation_miou(xtr, noise_tr, xte, noise_te, n_classes=3, epochs=10)
    assert miou < 0.4  # chance mIoU with 3 balanced classes is about 0.2
    a = fit_segmentation_probe(xtr, ytr, 3, epochs=3, batch_size=4, seed=5)
    b = fit_segmentation_probe(xtr, ytr, 3, epochs=3, batch_size=4, seed=5)
    np.testing.assert_array_equal(a.weight, b.weight)


def test_patch_features_from_a_tiny_model_with_intermediate_layers():
    from xterrafm.weights import load_model

    model = load_model("terrafm-tiny")
    images = torch.randn(3, 2, 32, 48)
    last = patch_features(model, images, "s1", batch_size=2)
    assert last.shape == (3, model.embed_dim, 2, 3)
    torch.testing.assert_close(last, model.forward_features(images, modality="s1")["patch"])
    stacked = patch_features(model, images, "s1", layers=[1, 3])
    assert stacked.shape == (3, 2 * model.embed_dim, 2, 3)
    labels = np.zeros((3, 32, 48), np.int64)
    labels[:, :, 24:] = 1
    probe = fit_segmentation_probe(stacked, labels, n_classes=2, epochs=5)
    assert 0.0 <= probe.score(stacked, labels) <= 1.0


def test_bad_labels_are_named():
    xtr, ytr = _patch_dataset(4, seed=0)
    with pytest.raises(ValueError, match="multiple"):
        fit_segmentation_probe(xtr, np.zeros((4, 6, 6), np.int64), n_classes=3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fit_segmentation_probe(xtr, ytr, n_classes=2)


def _striped_maps(n: int, seed: int, grid: int = 4, dim: int = 4, levels: int = 4):
    """Features whose class is readable only from the neighbourhood, not from one token.

    Each image is split in a left and a right half of patches (the class of a pixel); the
    token of a patch carries a noisy +1 / -1 code for its half in channel 0 of level 0 only
    on even columns, so that a per-token linear head misses the odd columns while a decoder
    with spatial context (3x3 convolutions, pooling) recovers them.
    """
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, levels * dim, grid, grid)).astype(np.float32) * 0.3
    side = np.where(np.arange(grid) >= grid // 2, 1, 0)
    flip = rng.integers(0, 2, size=n)  # which half is class 1
    labels = np.where(flip[:, None, None] == 1, side[None, None, :], 1 - side[None, None, :])
    labels = np.broadcast_to(labels, (n, grid, grid)).astype(np.int64)
    code = np.where(labels == 1, 2.0, -2.0)
    code[:, :, 1::2] = 0.0  # odd columns: no evidence in their own token
    feats[:, 0] += code
    pix = np.repeat(np.repeat(labels, 16, axis=1), 16, axis=2)
    return feats, pix


def test_upernet_head_uses_spatial_context_the_linear_head_lacks():
    xtr, ytr = _striped_maps(96, seed=0)
    xte, yte = _striped_maps(24, seed=1)
    linear = segmentation_miou(xtr, ytr, xte, yte, n_classes=2, epochs=30)
    upernet = segmentation_miou(xtr, ytr, xte, yte, n_classes=2, epochs=20, lr=5e-3,
                                head="upernet", n_levels=4, channels=16)
    assert linear < 0.75  # odd columns are guessed (measured 0.65)
    assert upernet > 0.9, (linear, upernet)  # measured 0.99
    probe = fit_segmentation_probe(xtr, ytr, 2, epochs=2, head="upernet", n_levels=4,
                                   channels=16)
    assert probe.predict(xte, size=(64, 64)).shape == (24, 64, 64)
    assert probe.logits(xte).shape == (24, 2, 16, 16)  # stride 4 from four stacked blocks
    with pytest.raises(ValueError, match="n_levels"):
        fit_segmentation_probe(xtr, ytr, 2, head="upernet")
    with pytest.raises(ValueError, match="split"):
        fit_segmentation_probe(xtr, ytr, 2, head="upernet", n_levels=3)
    with pytest.raises(ValueError, match="head"):
        fit_segmentation_probe(xtr, ytr, 2, head="mlp")


def test_upernet_decoder_shapes_for_fewer_levels():
    from xterrafm.eval.upernet import UPerNetDecoder

    x = torch.randn(2, 2 * 8, 4, 6)
    dec = UPerNetDecoder(8, n_levels=2, n_classes=3, channels=8)
    assert dec(x).shape == (2, 3, 8, 12)  # two levels: strides 8 and 16, output at 2x
    assert UPerNetDecoder(8, 1, 3, channels=8)(torch.randn(2, 8, 4, 6)).shape == (2, 3, 4, 6)
    with pytest.raises(ValueError, match="expected features"):
        dec(torch.randn(2, 8, 4, 6))
