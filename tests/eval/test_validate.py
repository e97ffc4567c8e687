"""``python -m xterrafm validate`` end to end on small copies of m-EuroSAT and EuroSAT-S1 in their
public formats, with a terrafm-tiny weights file standing in for the published one."""

from __future__ import annotations

import re

import pytest

from tests.helpers.benchmark_files import (
    write_eurosat_s1,
    write_geobench_task,
)
from xterrafm.cli import main
from xterrafm.eval.validate import PUBLISHED_FIGURES, PublishedFigure, ValidationRow

pytestmark = pytest.mark.requires_h5py



def _rows(out: str) -> dict[str, list[str]]:
    """Table rows of the report: protocol label -> the line's fields after it."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s+(knn|linear)( \(1% train\))?\s+(\d+)\s+(\d+)\s+([\d.]+) \[", line)
        if m:
            rows[m.group(1) + (m.group(2) or "")] = line.split()
    return rows


def _score(fields: list[str]) -> float:
    return float(next(f for f in fields if re.fullmatch(r"\d+\.\d", f)))


@pytest.fixture(scope="module")
def m_eurosat(tmp_path_factory):
    root = tmp_path_factory.mktemp("geobench") / "m-eurosat"
    write_geobench_task(root, {"train": 8, "valid": 2, "test": 4})
    return root


def test_m_eurosat_knn_beside_the_published_figures(m_eurosat, tiny_weights_file, capsys):
    code = main(["validate", "m-eurosat", str(m_eurosat), "--weights", tiny_weights_file,
                 "--model", "terrafm-tiny", "--size", "64", "--k", "5", "-q"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert set(rows) == {"knn", "knn (1% train)"}
    # labels read from the pickled attributes, train/test from the partition: classes separate
    assert _score(rows["knn"]) > 90
    assert "94.2" in rows["knn"] and "59.3" in rows["knn (1% train)"]
    assert rows["knn"][1:3] == ["24", "12"]  # 8 x 3 train, 4 x 3 test samples
    assert "normalisation terrafm-v1" in out and "modality s2_l1c" in out
    assert "resize 64 px" in out and "--size 224" in out
    # random tiny weights cannot match the paper: the report says what to try
    assert code == 1
    assert "does not match the paper; what to try:" in out
    for knob in ("normalisation:", "stem:", "resize:", "weights:"):
        assert f"  - {knob}" in out
    assert "--modality s2_l2a" in out and "--normalization train-stats" in out


def test_train_stats_normalisation_and_the_other_stem(m_eurosat, tiny_weights_file, capsys):
    main(["validate", "m-eurosat", str(m_eurosat), "--weights", tiny_weights_file,
          "--model", "terrafm-tiny", "--size", "0", "--k", "5", "--normalization",
          "train-stats", "--modality", "s2_l2a", "-q"])
    out = capsys.readouterr().out
    assert "normalisation train-stats (computed on train)" in out
    assert "modality s2_l2a" in out and "resize none (native) px" in out
    rows = _rows(out)
    # 12 test samples cannot tell 100 from 94.2, but the 1 % row is far from 59.3
    assert rows["knn"][-1] == "consistent" and rows["knn (1% train)"][-1] == "published"
    assert "--normalization terrafm-v1" in out and "--modality s2_l1c" in out
    assert "--size 224" in out


def test_eurosat_s1_linear_probe_and_knn(tmp_path, tiny_weights_file, capsys):
    write_eurosat_s1(tmp_path, {"train": 20, "val": 2, "test": 20})  # 60 test images
    code = main(["validate", "eurosat-s1", str(tmp_path / "eurosat_s1"), "--weights",
                 tiny_weights_file, "--model", "terrafm-tiny", "--size", "32", "--k", "5", "-q"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert set(rows) == {"linear", "knn"}
    assert "87.8" in rows["linear"] and rows["knn"][-3:] == ["no", "published", "figure"]
    assert _score(rows["linear"]) > 90 and _score(rows["knn"]) > 90
    assert "modality s1" in out and "Copernicus-Bench" in out
    assert code == 1 and "  - protocol: Copernicus-Bench's reference code trains" in out
    assert "input units" not in out  # dB files read as dB: nothing to say about units


def test_wrong_units_are_pointed_at(tmp_path, tiny_weights_file, capsys):
    write_eurosat_s1(tmp_path, {"train": 4, "test": 2}, units="linear")
    main(["validate", "eurosat-s1", str(tmp_path), "--weights", tiny_weights_file,
          "--model", "terrafm-tiny", "--size", "32", "--probe", "knn", "-q"])
    out = capsys.readouterr().out
    assert "  - input units: the median linear power" in out and "--s1-units linear" in out


def test_unusable_inputs_exit_with_usage_errors(tmp_path, tiny_weights_file, capsys):
    assert main(["validate", "m-eurosat", str(tmp_path / "none"), "--weights",
                 tiny_weights_file, "--model", "terrafm-tiny", "-q"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["validate", "eurosat-s1", str(tmp_path / "empty"), "--weights",
                 tiny_weights_file, "--model", "terrafm-tiny", "-q"]) == 2
    assert main(["validate", "m-eurosat", str(tmp_path / "empty"), "--weights",
                 tiny_weights_file, "--model", "terrafm-tiny", "--size", "50", "-q"]) == 2
    with pytest.raises(SystemExit):  # argparse: --weights is required
        main(["validate", "m-eurosat", str(tmp_path)])


def test_verdicts_follow_the_interval():
    fig = PublishedFigure("m-eurosat", "knn", 1.0, 94.2, "top-1 accuracy", "paper")
    row = ValidationRow("knn", 1.0, 0.935, 1000, 1000, fig)
    assert row.verdict == "consistent"
    lo, hi = row.interval
    assert lo < 0.935 < hi and 0.02 < hi - lo < 0.04  # about +-1.5 points at n = 1000
    assert ValidationRow("knn", 1.0, 0.915, 1000, 1000, fig).verdict == "LOWER than published"
    assert ValidationRow("knn", 1.0, 0.970, 1000, 1000, fig).verdict == "HIGHER than published"
    # a dozen test samples cannot tell 100 % from 94.2 %, but can tell it from 59.3 %
    assert ValidationRow("knn", 1.0, 1.0, 3, 12, fig).verdict == "consistent"
    low = PublishedFigure("m-eurosat", "knn", 0.01, 59.3, "top-1 accuracy", "paper")
    assert ValidationRow("knn", 0.01, 1.0, 3, 12, low).verdict == "HIGHER than published"
    assert ValidationRow("knn", 1.0, 0.5, 3, 12, None).verdict == "no published figure"
    assert {(f.benchmark, f.value) for f in PUBLISHED_FIGURES} == {
        ("m-eurosat", 94.2), ("m-eurosat", 59.3), ("eurosat-s1", 87.8)}
