"""Shared fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep torch from oversubscribing the 2-core CI machine when dask threads also run.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TESTS_DIR = Path(__file__).parent
REFERENCE_TSV = TESTS_DIR / "data" / "terrafm_state_dict.tsv"


@pytest.fixture(scope="session")
def reference_tsv() -> Path:
    """The published state_dict layout (names and shapes), copied from shared/reference."""
    return REFERENCE_TSV
