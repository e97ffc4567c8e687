"""Shared fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

# Keep torch from oversubscribing the 2-core CI machine when dask threads also run.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# precision="auto" follows the CPU (bf16 where it is native). Tests compare embeddings with fp32
# forward passes by hand, so every CPU answers "not native" unless a test says otherwise
# (monkeypatch.setenv); worker processes inherit this.
os.environ.setdefault("XTERRAFM_CPU_BF16", "0")

TESTS_DIR = Path(__file__).parent
REFERENCE_TSV = TESTS_DIR / "data" / "terrafm_state_dict.tsv"

#: ``XTERRAFM_GPU_REHEARSAL=1`` runs the ``requires_cuda`` tests on the CPU with tiny sizes and
#: CPU stand-ins (gloo for NCCL), so that their code is exercised before a GPU is lent
#: (``benchmarks/gpu_check.py --cpu-rehearsal``).
GPU_REHEARSAL = os.environ.get("XTERRAFM_GPU_REHEARSAL") == "1"


def _has_modules(*names: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [n for n in names if importlib.util.find_spec(n) is None]
        return f"{', '.join(missing)} not installed" if missing else None
    return check


def _loopback() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
    except OSError as err:
        return f"cannot open a socket on 127.0.0.1: {err}"
    return None


def _cuda() -> str | None:
    if GPU_REHEARSAL:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return "torch sees no CUDA device (XTERRAFM_GPU_REHEARSAL=1 rehearses these on the CPU)"


#: ``requires_*`` marker -> check returning why the test cannot run here (None: it can).
REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "requires_gateway": _has_modules("dask_gateway", "dask_gateway_server"),
    "requires_network_loopback": _loopback,
    "requires_h5py": _has_modules("h5py"),
    "requires_export": _has_modules("pyarrow", "geopandas"),
    "requires_nbclient": _has_modules("nbclient", "nbformat", "ipykernel"),
    "requires_matplotlib": _has_modules("matplotlib"),
    "requires_cuda": _cuda,
}


@functools.cache
def _missing(marker: str) -> str | None:
    return REQUIREMENTS[marker]()


def pytest_runtest_setup(item):
    """Skip a test whose ``requires_*`` markers name something this machine lacks."""
    for marker in REQUIREMENTS:
        if item.get_closest_marker(marker) is not None and (why := _missing(marker)):
            pytest.skip(f"{marker}: {why}")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Torch uses one thread in tests: the CI machine has two cores, shared with dask threads
    and with the worker processes some tests start."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def reference_tsv() -> Path:
    """The published state_dict layout (names and shapes), copied from shared/reference."""
    return REFERENCE_TSV


@pytest.fixture(scope="session")
def synthetic_scene(tmp_path_factory):
    """The default synthetic scene (seed 0, 448 x 448 px, 2 dates, S2 L2A/L1C + S1), written once
    per session; see :class:`xterrafm.datasets.SyntheticScene`. Treat it as read-only."""
    from xterrafm.datasets import make_synthetic_scene

    root = tmp_path_factory.mktemp("synthetic_scene")
    return make_synthetic_scene(root, seed=0, width=448, height=448, n_dates=2)
