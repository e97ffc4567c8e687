"""Fixtures of the eval tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Keep torch to one thread: the CI machine has two cores shared with dask."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def separable_blobs() -> tuple[np.ndarray, np.ndarray]:
    """600 samples of 4 classes, 16-D, class centres 10 noise-stds apart along their own axis."""
    rng = np.random.default_rng(42)
    y = np.repeat(np.arange(4), 150)
    centres = np.eye(4, 16) * 10.0
    x = centres[y] + rng.normal(size=(y.size, 16)) * 0.5 + 3.0  # offset: cosine must still work
    order = rng.permutation(y.size)
    return x[order].astype(np.float32), y[order]
