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
        ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path), "--modality", "s2_l1c"])
    with pytest.raises(SystemExit, match="not one of the paper's GEO-Bench tasks"):
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
                    "--size", "32", "--k", "3", "--modality", "s2_l1c"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("m-toy  k=3  top-1 acc")
    assert float(line.split()[-1]) > 0.9  # three brightness levels, chance is 1/3


def test_example_scores_a_multilabel_geobench_task_with_micro_f1(tmp_path, capsys):
    ex = _load_example()
    labels = {f"s{i:03d}": [int(i // 2 % 2 == 0), int(i // 2 % 2 == 1)] for i in range(16)}
    # the partition alternates train/test by name: both classes in each split
    _write_task(tmp_path / "m-multi", labels)
    assert ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path / "m-multi"),
                    "--size", "32", "--k", "3", "--modality", "s2_l2a"]) == 0
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


# -- the paper's four tasks, in their published layouts ---------------------------------------
_S1_NAMES = ["01 - VH.Real", "02 - VH.Imaginary", "03 - VV.Real", "04 - VV.Imaginary",
             "05 - VH.LEE Filtered", "06 - VV.LEE Filtered", "07 - VH.LEE Filtered.Real",
             "08 - VV.LEE Filtered.Imaginary"]


def _write_paper_task(root: Path, name: str, n: int = 12, side: int = 16, seed: int = 0):
    """A GEO-Bench task folder as published: the datasets each task has under GEO-Bench's
    names (m-so2sat with its Sentinel-1 channels; m-eurosat and m-brick-kiln with channels
    in their true order under the standard names), labels.json, the default and 0.01x_train
    partitions. Class c is brighter by c. Returns the labels."""
    import json

    import h5py
    import numpy as np

    from xterrafm.eval.geobench import GEOBENCH_S2_NAMES

    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    multilabel = name == "m-bigearthnet"
    labels = {}
    for i in range(n):
        c = i % 3
        sample = f"id_{i:04d}"
        labels[sample] = [int(c == j) for j in range(3)] if multilabel else c
        refl = 0.05 + 0.1 * c + 0.005 * rng.standard_normal((side, side))
        with h5py.File(folder / f"{sample}.hdf5", "w") as f:
            if name == "m-so2sat":  # 8 S1 channels, then 10 S2 bands stored as reflectance
                for s1 in _S1_NAMES:
                    f[s1] = np.full((side, side), 500.0, np.float32)
                for std in GEOBENCH_S2_NAMES:
                    if std.split(" - ")[0] not in ("01", "09", "10"):
                        f[std] = refl.astype(np.float32)
            else:
                names = [s for s in GEOBENCH_S2_NAMES if not (name == "m-bigearthnet"
                                                              and s.startswith("10 -"))]
                for std in names:
                    f[std] = (refl * 10000).astype(np.float32 if multilabel else np.int16)
    names = sorted(labels)
    train, test = names[0::2], names[1::2]
    (folder / "default_partition.json").write_text(
        json.dumps({"train": train, "valid": [], "test": test}))
    (folder / "0.01x_train_partition.json").write_text(
        json.dumps({"train": train[:3], "valid": [], "test": test}))
    (folder / "labels.json").write_text(json.dumps(labels))
    return labels


@pytest.mark.parametrize("task", ["m-eurosat", "m-bigearthnet", "m-so2sat", "m-brick-kiln"])
def test_every_paper_knn_task_runs_at_1_percent_with_the_official_partition(tmp_path, capsys,
                                                                           task):
    ex = _load_example()
    _write_paper_task(tmp_path, task)
    assert ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path / task), "--size",
                    "16", "--k", "1", "--train-fraction", "0.01"]) == 0
    out = capsys.readouterr().out
    stem = "s2_l2a" if task == "m-bigearthnet" else "s2_l1c"
    assert f"{task}: stem {stem}" in out
    assert "3 train / 6 test samples (partition 0.01x_train)" in out
    if task in ("m-so2sat", "m-brick-kiln"):
        assert "filled by 'interpolate'" in out
    metric = "micro-F1" if task == "m-bigearthnet" else "top-1 acc"
    assert any(line.startswith(f"{task}  k=1  {metric}") for line in out.splitlines())


def test_one_percent_without_the_partition_file_is_refused_or_subsampled(tmp_path, capsys):
    ex = _load_example()
    _write_paper_task(tmp_path, "m-eurosat")
    (tmp_path / "m-eurosat" / "0.01x_train_partition.json").unlink()
    args = ["--model", "terrafm-tiny", "--task-dir", str(tmp_path / "m-eurosat"), "--size",
            "16", "--k", "1", "--train-fraction", "0.01"]
    with pytest.raises(SystemExit, match=r"0\.01x_train_partition\.json not found.*--subsample"):
        ex.main(args)
    # --train-fraction 0.5 --subsample: a stratified half of the 6 training samples
    assert ex.main([*args[:-1], "0.5", "--subsample"]) == 0
    assert "6 train / 6 test samples (partition default, subsampled to 0.5)" in \
        capsys.readouterr().out


def test_channels_are_read_from_the_bands_they_really_hold(tmp_path):
    import h5py
    import numpy as np

    from xterrafm.eval import geobench

    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:  # channel i holds the value i (as DN: i * 1000)
        for i, std in enumerate(geobench.GEOBENCH_S2_NAMES):
            f[std] = np.full((4, 4), 1000 * (i + 1), np.int16)
    order = geobench.TASKS["m-eurosat"].channels
    x = geobench.read_sample(path, "s2_l1c", channels=order)[:, 0, 0]
    # m-eurosat: B8A is the last channel (stored as "12 - SWIR"), B09 the 9th ("08A - ...")
    got = dict(zip(["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                    "B11", "B12"], x.tolist(), strict=True))
    assert got["B8A"] == pytest.approx(1.3) and got["B09"] == pytest.approx(0.9)
    assert got["B11"] == pytest.approx(1.1) and got["B12"] == pytest.approx(1.2)
    kiln = geobench.read_sample(path, "s2_l1c", channels=geobench.TASKS["m-brick-kiln"].channels,
                                missing="interpolate")[:, 0, 0]
    k = dict(zip(got, kiln.tolist(), strict=True))
    assert k["B07"] == pytest.approx(0.6) and k["B8A"] == pytest.approx(0.7)
    assert k["B08"] == pytest.approx(0.8) and k["B11"] == pytest.approx(0.9)
    # B06 (740 nm) lies between B05 (705, value 0.5) and B07 (783, value 0.6)
    assert k["B06"] == pytest.approx(0.5 + 0.1 * (0.740 - 0.705) / (0.783 - 0.705), rel=1e-5)
    with pytest.raises(geobench.InputError, match="no dataset for band B06"):
        geobench.read_sample(path, "s2_l1c", channels=geobench.TASKS["m-brick-kiln"].channels)


def test_so2sat_sentinel1_channels_are_never_taken_for_sentinel2_bands(tmp_path):
    import numpy as np

    from xterrafm.eval import geobench
    from xterrafm.normalization import load_spec

    _write_paper_task(tmp_path, "m-so2sat", n=3)
    path = tmp_path / "m-so2sat" / "id_0001.hdf5"
    x = geobench.read_sample(path, "s2_l1c", scale=1.0, missing="interpolate")
    assert np.all(x < 1.0)  # the S1 channels (500) named "02 - VH.Imaginary" etc. are not read
    np.testing.assert_array_equal(x[0], x[1])  # B01 <- B02 (nothing below 443 nm)
    np.testing.assert_allclose(x[9], x[8], rtol=1e-6)  # B09 between equal B8A and B11
    mean = geobench.read_sample(path, "s2_l1c", scale=1.0, missing="mean")
    means = dict(zip(*(load_spec()["modalities"]["s2_l1c"][k] for k in ("bands", "mean")),
                     strict=True))
    assert np.all(mean[0] == np.float32(means["B01"]))
    # a wrong scale (DN / 10000 of values stored as reflectance) is refused before embedding
    ex = _load_example()
    with pytest.raises(SystemExit, match="(?s)far too small.*--scale"):
        ex.main(["--model", "terrafm-tiny", "--task-dir", str(tmp_path / "m-so2sat"),
                 "--size", "16", "--scale", "1e-4"])
