"""examples/geobench_knn.py runs its kNN protocol on the synthetic scene when given no data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "geobench_knn.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("geobench_knn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_band_prefixes_follow_geobench_names():
    ex = _load_example()
    assert [ex.geobench_band_prefix(b) for b in ("B01", "B08", "B8A", "B11")] == \
        ["01", "08", "08A", "11"]


def test_example_runs_without_a_dataset(capsys):
    ex = _load_example()
    assert ex.main(["--model", "terrafm-tiny", "--synthetic-size", "224", "--k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    acc = float(next(ln for ln in lines if ln.startswith("k=5")).split()[-1])
    floor = float(next(ln for ln in lines if ln.startswith("majority")).split()[-1])
    assert acc > floor  # land-cover classes separate even through random weights


def test_example_names_a_missing_task_layout(tmp_path):
    ex = _load_example()
    with pytest.raises(SystemExit, match="default_partition.json"):
        ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path)])
