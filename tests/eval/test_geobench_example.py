"""examples/geobench_knn.py runs its kNN protocol on the synthetic scene when given no data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.requires_h5py

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


# GEO-Bench's dataset names of the 13 Sentinel-2 bands (number, then a description).
_GEOBENCH_BANDS = ["01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red",
                   "05 - Vegetation Red Edge", "06 - Vegetation Red Edge",
                   "07 - Vegetation Red Edge", "08 - NIR", "08A - Vegetation Red Edge",
                   "09 - Water vapour", "10 - SWIR - Cirrus", "11 - SWIR", "12 - SWIR"]


def _write_task(task_dir: Path, labels: dict, seed: int = 0, side: int = 32) -> None:
    """A GEO-Bench-like task on disk: one HDF5 file per sample, partition and labels.json.

    Class c has a flat spectrum of DN 1000 + 800·c (plus noise): separable by brightness.
    """
    import json

    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    task_dir.mkdir(parents=True)
    for name, label in labels.items():
        level = 1000 + 800 * (int(np.argmax(label)) if isinstance(label, list) else label)
        with h5py.File(task_dir / f"{name}.hdf5", "w") as f:
            for band in _GEOBENCH_BANDS:
                f[band] = (level + 50 * rng.standard_normal((side, side))).astype(np.int16)
    names = sorted(labels)
    partition = {"train": names[0::2], "valid": [], "test": names[1::2]}
    (task_dir / "default_partition.json").write_text(json.dumps(partition))
    (task_dir / "labels.json").write_text(json.dumps(labels))


def test_example_reads_a_geobench_task_from_hdf5(tmp_path, capsys):
    import numpy as np

    ex = _load_example()
    labels = {f"s{i:03d}": i % 3 for i in range(24)}
    _write_task(tmp_path / "m-toy", labels)
    # bands in TerraFM order, B10 dropped, DN scaled to reflectance
    x = ex.read_geobench_sample(tmp_path / "m-toy" / "s001.hdf5", "s2_l1c", 1e-4, 0.0)
    assert x.shape == (13 - 1, 32, 32) and x.dtype == np.float32
    assert abs(float(x.mean()) - 0.18) < 0.01  # class 1: DN 1800
    assert ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path / "m-toy"),
                    "--size", "32", "--k", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("m-toy  k=3  top-1 acc")
    assert float(line.split()[-1]) > 0.9  # three brightness levels, chance is 1/3


def test_example_scores_a_multilabel_geobench_task_with_micro_f1(tmp_path, capsys):
    ex = _load_example()
    labels = {f"s{i:03d}": [int(i // 2 % 2 == 0), int(i // 2 % 2 == 1)] for i in range(16)}
    # the partition alternates train/test by name: both classes in each split
    _write_task(tmp_path / "m-multi", labels)
    assert ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path / "m-multi"),
                    "--size", "32", "--k", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("m-multi  k=3  micro-F1")
    assert float(line.split()[-1]) > 0.9


def test_example_names_a_band_the_hdf5_lacks(tmp_path):
    import h5py
    import numpy as np

    ex = _load_example()
    with h5py.File(tmp_path / "x.hdf5", "w") as f:
        f["02 - Blue"] = np.zeros((4, 4), np.int16)
    with pytest.raises(SystemExit, match="no dataset for band B01"):
        ex.read_geobench_sample(tmp_path / "x.hdf5", "s2_l2a", 1e-4, 0.0)
