"""Shared fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep torch from oversubscribing the 2-core CI machine when dask threads also run.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TESTS_DIR = Path(__file__).parent
REFERENCE_TSV = TESTS_DIR / "data" / "terrafm_state_dict.tsv"

#: ``XTERRAFM_GPU_REHEARSAL=1`` runs the ``requires_cuda`` tests on the CPU with tiny sizes and
#: CPU stand-ins (gloo for NCCL), so that their code is exercised before a GPU is lent
#: (``benchmarks/gpu_check.py --cpu-rehearsal``).
GPU_REHEARSAL = os.environ.get("XTERRAFM_GPU_REHEARSAL") == "1"


def pytest_runtest_setup(item):
    """Skip ``requires_cuda`` tests when torch sees no CUDA device (and no rehearsal is asked)."""
    if item.get_closest_marker("requires_cuda") is None or GPU_REHEARSAL:
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip("requires_cuda: torch sees no CUDA device (XTERRAFM_GPU_REHEARSAL=1 "
                    "rehearses these tests on the CPU)")


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
