"""benchmarks/bench_scaling.py: the lazy graph of a large tile stack has a fixed number of tasks
per block (tasks grow as blocks do) and the right output grid; nothing is computed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers.counting import raise_if_dask_computes

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.filterwarnings("ignore::xterrafm.errors.RandomWeightsWarning")
def test_graph_tasks_grow_as_blocks_and_nothing_is_computed():
    sys.path.insert(0, str(BENCH))
    try:
        from bench_scaling import graph_build
    finally:
        sys.path.remove(str(BENCH))
    with raise_if_dask_computes():
        small = graph_build(448, 2, 224, "terrafm-tiny")
        big = graph_build(896, 2, 224, "terrafm-tiny")
    assert (small["blocks"], big["blocks"]) == (2 * 4, 2 * 16)
    assert big["tasks"] * small["blocks"] == small["tasks"] * big["blocks"]
    assert big["output_shape"] == [2, 32, 4, 4]
