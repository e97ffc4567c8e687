"""Radiometric jitter of views: off by default, each component does what it says, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xterrafm.data.views import MultiCropConfig, jitter_radiometry, make_views
from xterrafm.pretrain.config import load_config
from xterrafm.pretrain.trainer import build_dataset


def _view(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, 16, 16, generator=g)


def test_off_by_default_and_when_skipped():
    x = _view()
    assert jitter_radiometry(np.random.default_rng(0), x, MultiCropConfig()) is x
    never = MultiCropConfig(brightness=1.0, radiometric_p=0.0)
    assert jitter_radiometry(np.random.default_rng(0), x, never) is x


def test_brightness_shifts_all_bands_alike():
    x = _view()
    out = jitter_radiometry(np.random.default_rng(1), x, MultiCropConfig(brightness=0.5,
                                                                         radiometric_p=1.0))
    shift = out - x
    assert float(shift.abs().max()) > 0
    torch.testing.assert_close(shift, torch.full_like(x, float(shift[0, 0, 0])))


def test_contrast_keeps_band_means_and_scales_deviations():
    x = _view()
    out = jitter_radiometry(np.random.default_rng(2), x, MultiCropConfig(contrast=0.4,
                                                                         radiometric_p=1.0))
    mean = x.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(-2, -1), keepdim=True), mean, atol=1e-5, rtol=0)
    ratio = (out - mean) / (x - mean)
    assert 0.6 <= float(ratio.mean()) <= 1.4
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.mean())),
                               atol=1e-3, rtol=1e-3)


def test_band_jitter_scales_each_band_and_noise_is_per_pixel():
    x = _view().abs() + 1.0
    out = jitter_radiometry(np.random.default_rng(3), x, MultiCropConfig(band_jitter=0.2,
                                                                         radiometric_p=1.0))
    gains = (out / x).reshape(12, -1)
    torch.testing.assert_close(gains, gains[:, :1].expand_as(gains))  # one gain per band
    assert float(gains[:, 0].std()) > 0.01
    noisy = jitter_radiometry(np.random.default_rng(4), x, MultiCropConfig(noise=0.1,
                                                                           radiometric_p=1.0))
    assert 0.07 < float((noisy - x).std()) < 0.13


def test_seeded_and_applied_in_make_views():
    tile = {"s2_l2a": _view().repeat(1, 4, 4)}
    cfg = MultiCropConfig(global_size=32, local_size=16, n_local=2, brightness=0.3,
                          band_jitter=0.1, noise=0.05, radiometric_p=1.0)
    a = make_views(np.random.default_rng(7), tile, ["s2_l2a"], [True], cfg)
    b = make_views(np.random.default_rng(7), tile, ["s2_l2a"], [True], cfg)
    torch.testing.assert_close(a["global"]["s2_l2a"], b["global"]["s2_l2a"])
    plain = make_views(np.random.default_rng(7), tile, ["s2_l2a"], [True],
                       MultiCropConfig(global_size=32, local_size=16, n_local=2))
    assert not torch.allclose(a["global"]["s2_l2a"], plain["global"]["s2_l2a"])


@pytest.mark.parametrize("bad", [dict(brightness=-1), dict(noise=-0.1), dict(contrast=1.0),
                                 dict(radiometric_p=1.5)])
def test_bad_settings_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MultiCropConfig(**bad)


def test_config_keys_reach_the_dataset(cube_path):
    cfg = load_config("tiny", {"brightness": 0.2, "band_jitter": 0.05, "radiometric_p": 0.5})
    ds = build_dataset(cfg, [cube_path])
    views = ds.views
    assert (views.brightness, views.band_jitter, views.radiometric_p) == (0.2, 0.05, 0.5)
