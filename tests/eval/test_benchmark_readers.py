"""Readers of GEO-Bench HDF5 tasks and Copernicus-Bench EuroSAT-S1 folders, in public formats."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from tests.helpers.benchmark_files import (
    geobench_metadata,
    write_eurosat_s1,
    write_geobench_task,
)
from xterrafm.errors import InputError
from xterrafm.eval import copernicus_bench, geobench

pytestmark = pytest.mark.requires_h5py


def test_geobench_labels_come_from_the_pickled_attribute(tmp_path):
    labels = write_geobench_task(tmp_path / "m-eurosat", {"train": 2, "valid": 1, "test": 1})
    names, got = geobench.load_split(tmp_path / "m-eurosat", "train")
    assert len(names) == 6 and got == [labels[n] for n in names]
    assert all(type(v) is int for v in got)  # numpy scalars decoded to plain ints
    x = geobench.read_sample(tmp_path / "m-eurosat" / f"{names[1]}.hdf5")
    assert x.shape == (12, 32, 32) and x.dtype == np.float32  # B10 dropped
    assert abs(float(x.mean()) - 0.15) < 0.01  # class 1: DN 1500 x 1e-4


def test_labels_json_takes_precedence(tmp_path):
    task = tmp_path / "t"
    labels = write_geobench_task(task, {"train": 1, "test": 1})
    (task / "labels.json").write_text(json.dumps({n: 9 for n in labels}))
    assert set(geobench.load_split(task, "test")[1]) == {9}


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_hostile_pickle_runs_nothing_and_a_hostile_label_is_refused(tmp_path):
    import h5py

    target = tmp_path / "pwned.txt"
    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["pickle"] = str(geobench_metadata(4, {"payload": _Exploit(str(target))}))
    assert geobench.read_label(path) == 4
    assert not target.exists()
    with h5py.File(path, "w") as f:
        f.attrs["pickle"] = str(pickle.dumps({"label": _Exploit(str(target))}))
    with pytest.raises(InputError, match="not plain data.*labels.json"):
        geobench.read_label(path)
    assert not target.exists()


@pytest.mark.parametrize("label", [[0, 1, 1], np.array([1, 0, 1], dtype=np.uint8),
                                   np.float32(2.0)])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_labels_of_every_pickle_protocol(tmp_path, label, protocol):
    import h5py

    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["pickle"] = str(pickle.dumps({"label": label}, protocol=protocol))
    assert geobench.read_label(path) == np.asarray(label).tolist()


def test_geobench_layout_errors_name_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="default_partition.json not found"):
        geobench.load_split(tmp_path, "train")
    write_geobench_task(tmp_path / "t", {"train": 1}, attr=False)
    with pytest.raises(InputError, match="has no split 'test'"):
        geobench.load_split(tmp_path / "t", "test")
    with pytest.raises(InputError, match="no 'pickle' attribute.*labels.json"):
        geobench.load_split(tmp_path / "t", "train")
    with pytest.raises(InputError, match="Sentinel-2"):
        geobench.read_sample(tmp_path / "t" / "id_0000.hdf5", "s1")


def test_eurosat_s1_split_lists_images_and_classes(tmp_path):
    base = write_eurosat_s1(tmp_path, {"train": 2, "val": 1, "test": 1})
    files, labels = copernicus_bench.load_split(tmp_path, "train")  # the parent folder works
    assert len(files) == 6 and labels[:3] == ["AnnualCrop", "Forest", "SeaLake"]
    assert copernicus_bench.load_split(base, "valid")[1] == ["AnnualCrop", "Forest", "SeaLake"]
    x = copernicus_bench.read_chip(files[0])
    assert x.shape == (2, 32, 32) and x.dtype == np.float32
    vv_db = 10 * np.log10(np.median(x[0]))
    assert abs(vv_db - -22) < 0.5  # dB converted to linear power and back
    os.remove(files[0])
    with pytest.raises(InputError, match="missing"):
        copernicus_bench.load_split(base, "train")
    with pytest.raises(InputError, match="not a Copernicus-Bench EuroSAT-S1 folder"):
        copernicus_bench.load_split(tmp_path / "nowhere", "train")
