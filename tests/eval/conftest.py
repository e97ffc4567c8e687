"""Fixtures of the eval tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def separable_blobs() -> tuple[np.ndarray, np.ndarray]:
    """600 samples of 4 classes, 16-D, class centres 10 noise-stds apart along their own axis."""
    rng = np.random.default_rng(42)
    y = np.repeat(np.arange(4), 150)
    centres = np.eye(4, 16) * 10.0
    x = centres[y] + rng.normal(size=(y.size, 16)) * 0.5 + 3.0  # offset: cosine must still work
    order = rng.permutation(y.size)
    return x[order].astype(np.float32), y[order]


@pytest.fixture(scope="session")
def tiny_weights_file(tmp_path_factory) -> str:
    """A terrafm-tiny safetensors file (seeded random values): a stand-in for the weights."""
    from xterrafm.weights import convert_weights, load_model

    path = tmp_path_factory.mktemp("validate-weights") / "terrafm-tiny.safetensors"
    convert_weights(load_model("terrafm-tiny", seed=123).state_dict(), path)
    return str(path)
