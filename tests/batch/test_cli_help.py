"""The command line's help is complete: every option documented, exit codes listed."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import pytest

from xterrafm.cli import EXIT_CODES_HELP, _stopped_message, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_console_script_top_level_help_lists_commands_and_exit_codes() -> None:
    # (python -m xterrafm runs the same main(); examples/batch_job.sh exercises it)
    exe = shutil.which("xterrafm")
    assert exe is not None, "the xterrafm console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "embed" in proc.stdout
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130", "143"):
        assert f"\n  {code}" in proc.stdout, code


@pytest.mark.parametrize("name", sorted(_subparsers(build_parser())))
def test_every_option_of_every_subcommand_has_help(name: str) -> None:
    sub = _subparsers(build_parser())[name]
    text = sub.format_help()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"{name}: {action.dest} has no help"
        for flag in action.option_strings:
            assert flag in text, f"{name}: {flag} missing from --help"


def test_embed_help_documents_sources_clusters_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for needle in ("STAC API", "GeoTIFF", "Zarr", "synthetic", "threads", "gateway",
                   "--overwrite", "--adapt", "--worker-memory", "--gpu", "EPSG_<code>"):
        assert needle in out, needle
    assert EXIT_CODES_HELP.splitlines()[1].strip() in out


def test_usage_errors_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--out", str(tmp_path / "e.zarr"), "--min-valid", "2"])
    assert exc.value.code == 2
    code = main(["embed", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "e.zarr")])
    assert code == 2
    assert "missing.tif" in capsys.readouterr().err
    code = main(["embed", "--out", str(tmp_path / "e.zarr"), "--workers", "2"])
    assert code == 2
    assert "--cluster gateway" in capsys.readouterr().err
    assert not (tmp_path / "e.zarr").exists()


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    assert "embed" in capsys.readouterr().err


def test_building_the_parser_does_not_import_torch() -> None:
    # `xterrafm --help` mounts every subcommand; importing torch for it took seconds
    code = ("import sys, xterrafm.cli; xterrafm.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'rasterio') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_only_embed_promises_a_resume_when_stopped() -> None:
    parser = build_parser()
    embed = parser.parse_args(["embed", "--out", "e.zarr"])
    evaluate = parser.parse_args(["eval"])
    assert "run the same command again to resume" in _stopped_message("interrupted", embed)
    assert _stopped_message("interrupted", evaluate) == "interrupted"
    assert _stopped_message("terminated", evaluate) == "terminated"
    eval_help = _subparsers(parser)["eval"].format_help()
    assert "130" in eval_help and "resumes" not in eval_help
