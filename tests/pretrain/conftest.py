"""Fixtures of the pretraining tests: few torch threads, tiny dimensions."""

from __future__ import annotations

import pytest


def _write_cube(path, size=128, chunk=64, seed=0):
    """A real Zarr training cube: S2 L2A + S1 + land-cover, classes separable by value."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(seed)
    lc = rng.choice([10, 30, 40, 80], size=(size // 16, size // 16), p=[0.4, 0.3, 0.2, 0.1])
    lc = np.kron(lc, np.ones((16, 16), dtype=np.uint8)).astype(np.uint8)
    signature = {10: 0.05, 30: 0.15, 40: 0.25, 80: 0.02}
    refl = np.vectorize(signature.get)(lc).astype(np.float32)
    s2 = refl[None, None] * np.linspace(0.5, 1.5, 12, dtype=np.float32)[None, :, None, None]
    s2 = s2 + 0.01 * rng.standard_normal((2, 12, size, size)).astype(np.float32)
    s1 = (0.01 + refl[None, None] * 0.2) * rng.exponential(1.0, (2, 2, size, size))
    ds = xr.Dataset({
        "s2_l2a": (("time", "band", "y", "x"), s2.astype(np.float32)),
        "s1": (("time", "band_s1", "y", "x"), s1.astype(np.float32)),
        "landcover": (("y", "x"), lc),
    })
    enc = {"s2_l2a": {"chunks": (1, 12, chunk, chunk)}, "s1": {"chunks": (1, 2, chunk, chunk)},
           "landcover": {"chunks": (chunk, chunk)}}
    ds.to_zarr(path, encoding=enc, mode="w", consolidated=False)
    return lc


@pytest.fixture(scope="session")
def pretrain_cube(tmp_path_factory):
    """Path of a 128 x 128 px training cube in 64 px chunks (sixteen 32 px tiles)."""
    path = tmp_path_factory.mktemp("pretrain_cube") / "cube.zarr"
    _write_cube(path)
    return path


#: Overrides that make the tiny config fast enough for tests on 2 CPU cores.
FAST = {
    "tile_size": 32, "global_crop_size": 32, "local_crop_size": 16, "n_local_crops": 2,
    "batch_size": 4, "out_dim": 256, "head_hidden_dim": 64, "head_bottleneck_dim": 32,
    "num_workers": 0, "total_steps": 40, "max_steps": 40, "warmup_steps": 2,
    "checkpoint_every": 4, "progress": False,
}


@pytest.fixture
def fast_overrides():
    """A copy of the fast test overrides of the tiny config."""
    return dict(FAST)
