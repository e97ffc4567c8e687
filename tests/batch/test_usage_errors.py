"""Usage errors exit 2 with a message naming the problem, before anything starts or is written;
the forms the help shows are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from xterrafm.cli import EXIT_OK, EXIT_USAGE, main


@pytest.mark.parametrize(("args", "says"), [
    (["--tile", "100"], "multiple of the 16 px"),
    (["--model", "foo"], "unknown TerraFM variant 'foo'"),
    (["--weights", "/nope/w.pth"], "no weights file at '/nope/w.pth'"),
    (["--device", "tpu"], "device must be"),
    (["--device", "cuda"], "no CUDA device"),
    (["--cluster", "bogus"], "--cluster 'bogus'"),
    (["--memory-limit", "lots"], "--memory-limit 'lots'"),
    (["--datetime", "June"], "datetime 'June'"),
    (["--stride", "300"], "stride must be between 1 and tile=224 px"),
    (["--calibration", "percent"], "calibration must be one of"),
    (["--calibration", "scale=abc"], "scale='abc' is not a number"),
    (["--bands", "B02,B02"], "names a band twice"),
])
def test_usage_errors_exit_2_and_write_nothing(tmp_path: Path, capsys, args, says) -> None:
    out = tmp_path / "run" / "e.zarr"
    code = main(["embed", "--out", str(out), "--cluster", "threads", *args]
                if "--cluster" not in args else ["embed", "--out", str(out), *args])
    assert code == EXIT_USAGE
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # no store, no synthetic scene


@pytest.mark.parametrize(("form", "dates"), [
    ("2024", 2), ("2024-06", 2), ("2024-06-01", 1), ("2024-06-01/2024-06-30", 2),
    ("2024-06-05T00:00:00Z/..", 1), ("2023-06", 0)])
def test_the_datetime_forms_of_the_help_select_items(batch_scene, tmp_path, form, dates) -> None:
    from xterrafm.io.stac_items import resolve_items

    # the synthetic scene's two dates are 2024-06-01 and 2024-06-11
    source = str(batch_scene.item_collections["s2_l2a"])
    if dates == 0:
        with pytest.raises(ValueError, match="no STAC items"):
            resolve_items(source, datetime=form)
        return
    assert len(resolve_items(source, datetime=form)) == dates
    assert main(["embed", str(batch_scene.item_collections["s2_l2a"]), "--datetime", form,
                 "--out", str(tmp_path / "e.zarr"), "--cluster", "threads", "--model",
                 "terrafm-tiny", "--tile", "64", "-q", "--no-progress", "--no-preview"]) == EXIT_OK
