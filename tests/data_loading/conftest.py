"""Fixtures of the data-loading tests: small real Zarr training cubes and a read-counting store."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from zarr.storage import LocalStore, WrapperStore

CUBE_SIZE = 128
CHUNK = 32


def write_cube(path: Path, size: int = CUBE_SIZE, chunk: int = CHUNK, n_dates: int = 2,
               seed: int = 0) -> np.ndarray:
    """Write a training cube (S2 L2A + S1 + land-cover) to Zarr; returns the land-cover map.

    The top-left 32 px square has no data in any modality, so its tile must be skipped; S1
    is missing on date 1 in the bottom-right quarter. Land-cover: 16 px blocks of classes
    10 (common) ... 80 (rare).
    """
    rng = np.random.default_rng(seed)
    lc = rng.choice([10, 20, 30, 80], size=(size // 16, size // 16), p=[0.6, 0.25, 0.1, 0.05])
    lc = np.kron(lc, np.ones((16, 16), dtype=np.uint8)).astype(np.uint8)
    base = (lc / 400.0).astype(np.float32)
    s2 = base[None, None] + 0.01 * rng.random((n_dates, 12, size, size), dtype=np.float32)
    s1 = 0.02 + base[None, None] * 0.1 + 0.001 * rng.random((n_dates, 2, size, size),
                                                             dtype=np.float32)
    s2[:, :, :32, :32] = np.nan
    s1[:, :, :32, :32] = np.nan
    s1[1, :, size // 2 :, size // 2 :] = np.nan
    ds = xr.Dataset(
        {
            "s2_l2a": (("time", "band", "y", "x"), s2),
            "s1": (("time", "band_s1", "y", "x"), s1.astype(np.float32)),
            "landcover": (("y", "x"), lc),
        }
    )
    enc = {
        "s2_l2a": {"chunks": (1, 12, chunk, chunk)},
        "s1": {"chunks": (1, 2, chunk, chunk)},
        "landcover": {"chunks": (chunk, chunk)},
    }
    ds.to_zarr(path, encoding=enc, mode="w", consolidated=False)
    return lc


class CountingStore(WrapperStore):
    """A real zarr store (wrapping LocalStore) that counts reads of each key."""

    def __init__(self, store, counts: Counter | None = None) -> None:
        super().__init__(store)
        self.counts = Counter() if counts is None else counts

    async def get(self, key, prototype, byte_range=None):
        self.counts[key] += 1
        return await super().get(key, prototype, byte_range)

    def chunk_reads(self) -> Counter:
        """Reads of chunk keys only (not metadata)."""
        return Counter({k: v for k, v in self.counts.items() if "/c/" in k})


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory) -> Path:
    """A 128 x 128 px cube in 32 px chunks."""
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    write_cube(path)
    return path


@pytest.fixture(scope="module")
def big_chunk_cube_path(tmp_path_factory) -> Path:
    """The same layout in 64 px chunks (four 32 px tiles per chunk)."""
    path = tmp_path_factory.mktemp("cube64") / "cube.zarr"
    write_cube(path, chunk=64)
    return path


@pytest.fixture
def counting_store():
    """Factory: ``counting_store(path)`` -> CountingStore over a LocalStore (read-only)."""

    def make(path: Path) -> CountingStore:
        return CountingStore(LocalStore(str(path), read_only=True))

    return make
