"""One run of every CUDA path and the GPU figures of TerraFM, within a fixed time budget.

Sections, in this order (each independent: a failing one records its traceback in the JSON and
the next one runs; once the budget is spent the rest are recorded as skipped):

``machine``            GPU, driver, CPU, library versions, what is importable.
``tests``              ``pytest tests/gpu`` (the ``requires_cuda`` tests) in a subprocess; its
                       whole output goes to ``<out>.tests.log`` beside the JSON.
``matmul_peak``        bf16 / fp32 / TF32 ``torch.matmul`` TFLOP/s (the % of peak reference).
``throughput_eager``   tiles/s of TerraFM-B and -L, bf16 and fp32, batch 64..512, eager.
``host_to_device``     copy GB/s of a batch, and the model fed from host memory.
``end_to_end``         local Zarr cube -> ``embed()`` -> one-GPU LocalCluster, vs bare model.
``sdpa_backends``      tiles/s with each scaled-dot-product-attention backend forced.
``throughput_compiled`` the same grid with the blocks through ``torch.compile`` (bf16): last,
                       as the longest and the one the budget may cut.

Usage (see docs/gpu.md for the device command)::

    python benchmarks/gpu_check.py --out $OUT/gpu_check.json          # on a GPU, <= 6 min
    python benchmarks/gpu_check.py --cpu-rehearsal --out /tmp/r.json  # here: tiny sizes
    python benchmarks/gpu_check.py --cpu-rehearsal --rehearse-tests --out /tmp/r.json

The JSON is rewritten after every section (and every measured row), so a run that is stopped
still leaves its figures; ``complete`` says whether it reached the end. A watchdog ends the
process at ``--hard-limit`` seconds (default: budget + 20 s) with ``stopped_by`` set.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the device machine runs the checkout without installing it
    sys.path.insert(1, str(REPO))

from gpu_runner import Budget, Report, SkipSection, blocker_site_dir  # noqa: E402

#: Sizes of a run on a GPU (about 5.5 minutes in all).
GPU_SIZES: dict[str, Any] = {
    "budget_s": 330, "tests_timeout_s": 150, "test_timeout_s": 120,
    "matmul_n": 8192, "matmul_iters": 10,
    "models": ["terrafm-b", "terrafm-l"], "tile": 224, "batches": [64, 128, 256, 512],
    "precisions": ["bf16", "fp32"], "compile_precisions": ["bf16"],
    "compile_batches": [64, 128, 256, 512],
    "compile_backend": "inductor", "min_time": 0.4, "min_iters": 3, "max_iters": 50,
    "warmup": 2, "row_need_s": 4, "compile_need_s": 45, "sdpa_batch": 256,
    "e2e_model": "terrafm-b", "e2e_side": 3584, "e2e_dates": 6, "e2e_block_cells": 8,
    "e2e_batch": 64, "reader_threads": max(2, (os.cpu_count() or 4) - 2),
    "e2e_target_s": 8, "e2e_reserve_s": 40, "e2e_variant_need_s": 15, "e2e_bare_need_s": 5,
}

#: Sizes of the CPU rehearsal (under a minute on 2 cores): same code, tiny model and data.
REHEARSAL_SIZES: dict[str, Any] = {
    **GPU_SIZES,
    "budget_s": 75, "tests_timeout_s": 240, "test_timeout_s": 120,
    "matmul_n": 256, "matmul_iters": 3,
    "models": ["terrafm-tiny"], "tile": 64, "batches": [2, 4], "precisions": ["fp32", "bf16"],
    "compile_precisions": ["fp32"], "compile_batches": [4], "compile_backend": "eager",
    "min_time": 0.05,
    "min_iters": 2, "max_iters": 5, "warmup": 1, "row_need_s": 1, "compile_need_s": 3,
    "sdpa_batch": 4, "e2e_model": "terrafm-tiny", "e2e_side": 256, "e2e_dates": 2,
    "e2e_block_cells": 2, "e2e_batch": 4, "reader_threads": 2, "e2e_target_s": 2,
    "e2e_reserve_s": 3, "e2e_variant_need_s": 2, "e2e_bare_need_s": 1,
}

#: Packages absent on the lent GPU machine that docs/gpu.md's wheel bundle does not carry
#: (import names); ``--block-imports`` refuses them to rehearse that machine here.
ABSENT_ON_GPU = ["pystac", "pystac_client", "odc.stac", "odc.loader", "dask_gateway",
                 "xbatcher"]


# -- sections of this module ------------------------------------------------------------------
def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(ctx: Any, rec: dict) -> None:
    """Where the run happens: GPU, driver, CPU, versions, importable optional packages."""
    import torch

    fig = rec["figures"]
    fig.update(python=platform.python_version(), torch=torch.__version__,
               cuda_runtime=torch.version.cuda, cpu=_cpu_model(), cpu_cores=os.cpu_count(),
               float32_matmul_precision=torch.get_float32_matmul_precision(),
               device=str(ctx.device))
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        fig.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count,
                   capability=f"{p.major}.{p.minor}", cudnn=torch.backends.cudnn.version(),
                   gpus=torch.cuda.device_count())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,"
                                  "power.limit", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
            fig["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            fig["nvidia_smi"] = f"unavailable: {err}"
    fig["versions"] = {d: _version(d) for d in (
        "numpy", "xarray", "dask", "distributed", "zarr", "numcodecs", "odc-geo", "pyproj",
        "shapely", "rasterio", "rioxarray", "numba", "pandas", "triton", "pytest")}
    importable = {}
    for mod in ("rasterio", "rioxarray", "pystac", "odc.stac", "xterrafm.embedding",
                "xterrafm.pretrain", "xterrafm.io"):
        try:
            importlib.import_module(mod)
            importable[mod] = True
        except Exception as err:  # noqa: BLE001 - what fails to import is the finding
            importable[mod] = f"{type(err).__name__}: {err}"
    fig["importable"] = importable


def tests(ctx: Any, rec: dict) -> None:
    """``pytest tests/gpu`` in a subprocess with a timeout; outcome of every test."""
    s = ctx.sizes
    fig = rec["figures"]
    xml = Path(ctx.workdir) / "gpu_tests.xml"
    log = ctx.report.path.with_suffix(".tests.log")  # the whole pytest output, beside the JSON
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if ctx.tests_on_cpu:
        env["XTERRAFM_GPU_REHEARSAL"] = "1"
    else:
        env.pop("XTERRAFM_GPU_REHEARSAL", None)
    timeout = min(s["tests_timeout_s"], max(ctx.budget.left() - 5, 5))
    cmd = [sys.executable, "-m", "pytest", "-v", "-rs", "tests/gpu", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "-o", f"timeout={s['test_timeout_s']}"]
    fig.update(command=" ".join(cmd[1:]), timeout_s=round(timeout), log=str(log),
               on_cpu=bool(ctx.tests_on_cpu))
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            fig["returncode"] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            fig["returncode"] = None
            rec["status"], rec["reason"] = "failed", f"pytest ran past {timeout:.0f} s and was killed"
    text = log.read_text(errors="replace")
    fig["output_tail"] = text[-3000:]
    # the XML is written when pytest ends; a killed run leaves the -v lines of finished tests
    cases = _junit_cases(xml) if xml.exists() else _logged_cases(text)
    fig["tests"] = cases
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error",
                                                                  "skipped")}
    fig.update(counts)
    if rec["status"] != "running":
        return
    if not cases:
        rec["status"], rec["reason"] = "error", "pytest wrote no test results (see output_tail)"
    elif counts["failed"] or counts["error"]:
        rec["status"] = "failed"
        rec["reason"] = f"{counts['failed']} failed, {counts['error']} errors"
    elif not counts["passed"]:
        reasons = sorted({c["message"] for c in cases if c["message"]})
        raise SkipSection(f"all {counts['skipped']} tests skipped: " + "; ".join(reasons))


def _logged_cases(text: str) -> list[dict]:
    """Outcomes of the tests that finished, from ``pytest -v`` lines (no XML: pytest killed)."""
    import re

    found = re.findall(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", text, re.M)
    return [{"test": name, "outcome": {"PASSED": "passed", "FAILED": "failed",
                                       "ERROR": "error", "SKIPPED": "skipped"}[word],
             "seconds": None, "message": "from the log: pytest was stopped before its report"}
            for name, word in found]


def _junit_cases(path: Path) -> list[dict]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (node.get("message") or node.text or "")[:1500]
                break
        cases.append({"test": f"{case.get('classname', '')}::{case.get('name')}",
                      "outcome": outcome, "seconds": round(float(case.get("time", 0)), 2),
                      "message": message})
    return cases


# -- driver -----------------------------------------------------------------------------------
def _sections() -> list[tuple[str, Any, float]]:
    """(name, function, seconds needed at least) in running order."""
    import gpu_e2e_bench as e2e
    import gpu_model_bench as mb

    return [
        ("machine", machine, 0),
        ("tests", tests, 20),
        ("matmul_peak", mb.matmul_peak, 2),
        ("throughput_eager", lambda c, r: mb.throughput(c, r, "eager"), 5),
        ("host_to_device", mb.host_to_device, 3),
        ("end_to_end", e2e.end_to_end, 25),
        ("sdpa_backends", mb.sdpa_backends, 4),
        ("throughput_compiled", lambda c, r: mb.throughput(c, r, "compiled"), 10),
    ]


def _summary(report: Report) -> None:
    """Print the figures a reader looks for first."""
    sections = report.data["sections"]
    print("\n== summary ==")
    for name, rec in sections.items():
        why = f"  ({rec.get('reason')})" if rec.get("reason") else ""
        print(f"{name:20s} {rec['status']:8s} {rec.get('seconds', 0):6.1f} s{why}")
    peak = sections.get("matmul_peak", {}).get("figures", {})
    if peak.get("bf16_tflops"):
        print(f"\nmatmul peak TFLOP/s: bf16 {peak['bf16_tflops']:.4g}, fp32 "
              f"{peak.get('fp32_tflops', 0):.4g}, tf32 {peak.get('tf32_tflops', 'n/a')}")
    for name in ("throughput_eager", "throughput_compiled"):
        rows = sections.get(name, {}).get("figures", {}).get("rows", [])
        if rows:
            print(f"\n{name}: model precision batch -> tiles/s (% of matmul peak, peak GiB)")
        for r in rows:
            if "error" in r:
                print(f"  {r['model']:12s} {r['precision']:4s} {r['batch']:4d} -> {r['error'][:80]}")
            else:
                print(f"  {r['model']:12s} {r['precision']:4s} {r['batch']:4d} -> "
                      f"{r['tiles_per_s']:9.1f} ({r['pct_of_matmul_peak']:5.3g} %, "
                      f"{r.get('peak_mem_gib', '-')})")
    e2e = sections.get("end_to_end", {}).get("figures", {})
    for v in e2e.get("variants", []):
        print(f"\nend to end {v['variant']:10s}: {v['tiles_per_s']:9.1f} tiles/s over "
              f"{v['windows']} windows; x{v.get('ratio_to_bare_from_host', float('nan')):.2f} "
              f"of the bare model from host, x{v.get('ratio_to_bare_resident', float('nan')):.2f} "
              "resident")
    print(f"\nreport: {report.path} (complete: {report.data['complete']})")


def main(argv: list[str] | None = None) -> int:
    """Run the check; exit status 0 when every section that ran is ``ok`` or ``skipped``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="path of the JSON report")
    ap.add_argument("--cpu-rehearsal", action="store_true",
                    help="run everything on the CPU with tiny sizes (no GPU needed)")
    ap.add_argument("--rehearse-tests", action="store_true",
                    help="with --cpu-rehearsal: run tests/gpu on the CPU too "
                         "(XTERRAFM_GPU_REHEARSAL=1) instead of letting them skip")
    ap.add_argument("--budget", type=float, default=None,
                    help="soft time budget in seconds (default 330 on a GPU, 75 rehearsing)")
    ap.add_argument("--hard-limit", type=float, default=None,
                    help="the process ends here, whatever runs (default: budget + 20 s)")
    ap.add_argument("--sections", default=None,
                    help="comma-separated subset of the sections, in their usual order")
    ap.add_argument("--block-imports", default=None,
                    help="comma-separated import names to refuse here and in child processes "
                         "(rehearses a machine without them; 'gpu' = " + ",".join(ABSENT_ON_GPU)
                         + ")")
    args = ap.parse_args(argv)

    sizes = dict(REHEARSAL_SIZES if args.cpu_rehearsal else GPU_SIZES)
    budget = Budget(args.budget if args.budget is not None else sizes["budget_s"])
    workdir = tempfile.mkdtemp(prefix="gpu_check-")
    if args.block_imports:
        names = ABSENT_ON_GPU if args.block_imports == "gpu" else args.block_imports.split(",")
        blocker_site_dir(names, workdir)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(REPO)])
    import torch

    if args.cpu_rehearsal:
        torch.set_num_threads(1)  # tiny models; the cluster's worker shares the cores
    elif not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device; use --cpu-rehearsal on a machine without "
              "one", file=sys.stderr)
        return 2
    header = {"script": "benchmarks/gpu_check.py", "mode": "cpu-rehearsal" if args.cpu_rehearsal
              else "gpu", "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "budget_s": budget.seconds, "argv": sys.argv[1:], "sizes": sizes,
              "blocked_imports": os.environ.get("XTERRAFM_BLOCK_IMPORTS", "")}
    report = Report(args.out, header, budget)
    hard = args.hard_limit if args.hard_limit is not None else budget.seconds + 20
    report.start_watchdog(hard)
    ctx = SimpleNamespace(sizes=sizes, budget=budget, report=report, workdir=workdir,
                          device=torch.device("cpu" if args.cpu_rehearsal else "cuda"),
                          tests_on_cpu=args.cpu_rehearsal and args.rehearse_tests,
                          results={})
    chosen = set(args.sections.split(",")) if args.sections else None
    known = [name for name, _, _ in _sections()]
    if chosen and not chosen <= set(known):
        print(f"gpu_check: unknown sections {sorted(chosen - set(known))}; known: {known}",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        for name, fn, need in _sections():
            if chosen is None or name in chosen:
                report.run_section(name, fn, ctx, need)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.data["sections_s"] = round(time.monotonic() - t0, 1)
    report.finish()
    _summary(report)
    bad = [n for n, r in report.data["sections"].items() if r["status"] not in ("ok", "skipped")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
