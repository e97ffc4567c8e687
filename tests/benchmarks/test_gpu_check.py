"""benchmarks/gpu_check.py: its CPU rehearsal writes every section, sections are independent,
and the time limits hold (the GPU run itself needs a lent GPU: docs/gpu.md)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SECTIONS = ["machine", "tests", "matmul_peak", "throughput_eager", "host_to_device",
            "end_to_end", "sdpa_backends", "throughput_compiled"]


def _runner():
    spec = importlib.util.spec_from_file_location("gpu_runner_under_test",
                                                  BENCH / "gpu_runner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_rehearsal_writes_every_section_with_figures_or_a_reason(tmp_path):
    out = tmp_path / "gpu_check.json"
    # a budget no loaded 2-core machine exhausts (about 40-75 s are used), bounded by timeout
    cmd = [sys.executable, str(BENCH / "gpu_check.py"), "--cpu-rehearsal", "--budget", "150",
           "--hard-limit", "170", "--out", str(out), "--block-imports", "gpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["complete"] and report["stopped_by"] is None
    assert report["mode"] == "cpu-rehearsal"
    sec = report["sections"]
    assert list(sec) == SECTIONS
    for name, rec in sec.items():
        assert rec["status"] in ("ok", "skipped"), (name, rec)
        assert rec["status"] == "ok" or rec["reason"], name
    # the GPU tests were collected and each skipped for want of CUDA
    tests = sec["tests"]
    assert tests["status"] == "skipped" and "no CUDA device" in tests["reason"]
    assert tests["figures"]["skipped"] == len(tests["figures"]["tests"]) >= 8
    assert sec["host_to_device"]["status"] == "skipped"
    assert "no CUDA" in sec["host_to_device"]["reason"]
    # the blocked packages (absent on the GPU machine) were refused, xterrafm's GPU path not
    importable = sec["machine"]["figures"]["importable"]
    assert "No module named 'pystac'" in importable["pystac"]
    assert importable["xterrafm.embedding"] is True
    peak = sec["matmul_peak"]["figures"]
    assert peak["bf16_tflops"] > 0 and peak["fp32_tflops"] > 0
    sizes = report["sizes"]
    for name in ("throughput_eager", "throughput_compiled"):
        rows = sec[name]["figures"]["rows"]
        kind = "" if name.endswith("eager") else "compile_"
        assert len(rows) == (len(sizes["models"]) * len(sizes[f"{kind}precisions"])
                             * len(sizes[f"{kind}batches"]))
        assert all(r["tiles_per_s"] > 0 and r["pct_of_matmul_peak"] > 0 for r in rows), rows
    e2e = sec["end_to_end"]["figures"]
    assert [v["variant"] for v in e2e["variants"]] == ["serial", "concurrent"]
    assert all(v["finite"] and v["windows"] == 32 and v["ratio_to_bare_from_host"] > 0
               for v in e2e["variants"])
    worker = e2e["worker"]
    assert worker["stats"]["models_built"] == 1 and worker["stats"]["cached_models"][0][-2:] == [
        "cpu", "fp32"]
    sdpa = {r["backend"]: r for r in sec["sdpa_backends"]["figures"]["rows"]}
    assert sdpa["default"]["tiles_per_s"] > 0 and sdpa["math"]["tiles_per_s"] > 0
    assert "== summary ==" in proc.stdout


def test_sections_are_independent_and_keep_to_the_budget(tmp_path):
    runner = _runner()
    budget = runner.Budget(60)
    report = runner.Report(tmp_path / "r.json", {"mode": "test"}, budget)

    def broken(ctx, rec):
        rec["figures"]["before"] = 1
        raise ZeroDivisionError("on purpose")

    def fine(ctx, rec):
        rec["figures"]["value"] = ctx

    def cut(ctx, rec):
        rec["figures"]["rows"] = [1]
        runner.Budget(0).need(5, "the next row")

    def cannot(ctx, rec):
        raise runner.SkipSection("no CUDA device here")

    report.run_section("broken", broken, None, 0)
    report.run_section("fine", fine, 42, 0)
    report.run_section("cut", cut, None, 0)
    report.run_section("cannot", cannot, None, 0)
    report.run_section("too_big", fine, 1, need_s=1e6)
    report.finish()
    got = json.loads((tmp_path / "r.json").read_text())
    sec = got["sections"]
    assert sec["broken"]["status"] == "error" and "ZeroDivisionError" in sec["broken"]["traceback"]
    assert sec["broken"]["figures"] == {"before": 1}
    assert sec["fine"] == {**sec["fine"], "status": "ok", "figures": {"value": 42}}
    assert sec["cut"]["status"] == "partial" and "the next row" in sec["cut"]["reason"]
    assert sec["cannot"]["status"] == "skipped" and sec["cannot"]["reason"] == "no CUDA device here"
    assert sec["too_big"]["status"] == "skipped" and "time budget" in sec["too_big"]["reason"]
    assert got["complete"] is True


def test_watchdog_writes_the_report_and_ends_the_process_and_its_children(tmp_path):
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        sys.path.insert(0, {str(BENCH)!r})
        from gpu_runner import Budget, Report
        report = Report({str(tmp_path / "r.json")!r}, {{"mode": "test"}}, Budget(100))
        report.start_watchdog(1.5)

        def hangs(ctx, rec):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            rec["figures"]["child"] = child.pid
            report.write()
            time.sleep(60)

        report.run_section("hangs", hangs, None, 0)
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - t0 < 30
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["stopped_by"] == "hard time limit" and not got["complete"]
    assert got["sections"]["hangs"]["status"] == "killed"
    import psutil

    pid = got["sections"]["hangs"]["figures"]["child"]
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive


def test_outcomes_of_a_killed_pytest_come_from_its_verbose_lines(monkeypatch):
    """Without the XML (pytest killed at its timeout) the finished tests are read from the log."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", BENCH / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log = ("tests/gpu/test_a.py::test_one PASSED                 [ 33%]\n"
           "tests/gpu/test_b.py::test_two FAILED                 [ 66%]\n"
           "tests/gpu/test_b.py::test_three SKIPPED (no CUDA)    [100%]\n"
           "FAILED tests/gpu/test_b.py::test_two - AssertionError\n")
    cases = module._logged_cases(log)
    assert [(c["test"], c["outcome"]) for c in cases] == [
        ("tests/gpu/test_a.py::test_one", "passed"), ("tests/gpu/test_b.py::test_two", "failed"),
        ("tests/gpu/test_b.py::test_three", "skipped")]
