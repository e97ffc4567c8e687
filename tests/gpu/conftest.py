"""Fixtures of the CUDA tests: where they run (a GPU, or the CPU in a rehearsal) and their data.

Every test here carries the ``requires_cuda`` marker (tests/conftest.py skips it without a
GPU). With ``XTERRAFM_GPU_REHEARSAL=1`` the same tests run on the CPU at tiny sizes, with gloo
in place of NCCL, so that their code has run once before a GPU session spends device time on
it (``benchmarks/gpu_check.py --cpu-rehearsal`` does this).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np
import pytest

REHEARSAL = os.environ.get("XTERRAFM_GPU_REHEARSAL") == "1"


@dataclass(frozen=True)
class Target:
    """Where and how large the CUDA tests run.

    Attributes
    ----------
    device : str
        ``"cuda"``, or ``"cpu"`` in a rehearsal.
    indexed_device : str
        ``"cuda:0"``, or ``"cpu"`` in a rehearsal.
    backend : str
        Process-group backend: ``"nccl"``, or ``"gloo"`` in a rehearsal.
    model : str
        Variant of the numerics tests: ``terrafm-b`` on a GPU (the published architecture),
        ``terrafm-tiny`` in a rehearsal (bf16 ViT-B takes minutes on a CPU).
    tile : int
        Window side in pixels (224 on a GPU, 64 in a rehearsal).
    precision : str
        What ``precision="auto"`` resolves to there (``"bf16"`` on CUDA, ``"fp32"`` on CPU).
    compile_backend : str
        ``torch.compile`` backend: inductor on a GPU; ``eager`` (dynamo's tracing alone) in a
        rehearsal (inductor's C++ builds take minutes on a 2-core CPU).
    rehearsal : bool
    """

    device: str
    indexed_device: str
    backend: str
    model: str
    tile: int
    precision: str
    compile_backend: str
    rehearsal: bool


@pytest.fixture(scope="session")
def target() -> Target:
    """The :class:`Target` of this session."""
    if REHEARSAL:
        return Target("cpu", "cpu", "gloo", "terrafm-tiny", 64, "fp32", "eager", True)
    return Target("cuda", "cuda:0", "nccl", "terrafm-b", 224, "bf16", "inductor", False)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def make_s2_cube():
    """Factory ``make_s2_cube(side, n_dates=1, chunks=None, seed=0)`` of lazy S2 L2A cubes."""
    return _make_s2_cube


def _make_s2_cube(side: int, n_dates: int = 1, chunks: int | None = None, seed: int = 0):
    """A lazy S2 L2A cube following the reader contract (reflectance, EPSG:32632, 10 m).

    Returns an ``xr.DataArray`` ``(time, band, y, x)`` float32, dask-backed, with
    ``attrs["modality"] = "s2_l2a"``; only odc-geo, dask and xarray are needed to build it.
    """
    import dask.array as da
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from xterrafm.bands import band_names

    gbox = GeoBox.from_bbox((600000, 5100000, 600000 + 10 * side, 5100000 + 10 * side),
                            "EPSG:32632", resolution=10)
    bands = band_names("s2_l2a")
    values = np.random.default_rng(seed).uniform(0.02, 0.4, (n_dates, len(bands), side, side))
    coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
    coords["band"] = bands
    coords["time"] = np.array([f"2021-0{i + 1}-15" for i in range(n_dates)],
                              dtype="datetime64[ns]")
    data = da.from_array(values.astype(np.float32), chunks=(1, -1, chunks or side, chunks or side))
    return xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords,
                        attrs={"modality": "s2_l2a", "item_ids": []})


@pytest.fixture(scope="session")
def train_cube(tmp_path_factory):
    """Path of a 128 x 128 px Zarr training cube (S2 L2A + S1 + land cover; sixteen 32 px
    tiles), classes separable by value, as the pretraining tests use."""
    import xarray as xr

    path = tmp_path_factory.mktemp("gpu_train_cube") / "cube.zarr"
    size, chunk = 128, 64
    rng = np.random.default_rng(0)
    lc = rng.choice([10, 30, 40, 80], size=(size // 16, size // 16), p=[0.4, 0.3, 0.2, 0.1])
    lc = np.kron(lc, np.ones((16, 16), dtype=np.uint8)).astype(np.uint8)
    refl = np.vectorize({10: 0.05, 30: 0.15, 40: 0.25, 80: 0.02}.get)(lc).astype(np.float32)
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
    return path


#: Overrides that make the tiny pretraining config take seconds (as tests/pretrain uses).
FAST = {
    "tile_size": 32, "global_crop_size": 32, "local_crop_size": 16, "n_local_crops": 2,
    "batch_size": 4, "out_dim": 256, "head_hidden_dim": 64, "head_bottleneck_dim": 32,
    "num_workers": 0, "total_steps": 40, "max_steps": 40, "warmup_steps": 2,
    "checkpoint_every": 3, "progress": False,
}


@pytest.fixture
def fast_overrides() -> dict:
    """A copy of :data:`FAST`."""
    return dict(FAST)
