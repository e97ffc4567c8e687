"""Encoder throughput of TerraFM on this machine: folded vs unfolded patch embedding.

Prints, for one variant (default terrafm-b) at batch 8 and 224 x 224 px:

* images/s with the folded inference path (``use_folded=True``) and the published, unfolded
  computation (``use_folded=False``), and their ratio;
* achieved GFLOP/s of each path, from an analytic count of the model's multiply-adds
  (2 FLOPs each; matrix products, convolution-as-product and attention only: norms, GELU and
  softmax are not counted);
* the machine's fp32 matmul GFLOP/s (``torch.matmul`` of square matrices), measured in the
  same run, and the achieved fraction of it.

Timings interleave the two paths over several rounds and keep each path's best round, so that
load from other processes affects both alike. Not a test: run it by hand,
``python benchmarks/bench_encoder.py [--variant terrafm-b] [--batch 8] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from xterrafm.models import TerraFMConfig
from xterrafm.weights import load_model


def encoder_flops(cfg: TerraFMConfig, height: int, width: int, modality: str,
                  folded: bool) -> int:
    """FLOPs (2 per multiply-add) of one image through the encoder's matrix products.

    Parameters
    ----------
    cfg : TerraFMConfig
        Architecture.
    height, width : int
        Image size in pixels (multiples of the patch size).
    modality : str
        Input modality (sets the stem's input channels).
    folded : bool
        Count the folded patch embedding (stem·proj1 and proj3·proj2 as single maps).
    """
    p, d, s = cfg.patch_size, cfg.embed_dim, cfg.stem_dim
    n = (height // p) * (width // p)  # patch tokens
    t = n + 1  # with CLS
    k = cfg.in_channels[modality] * p * p
    if folded:
        embed = n * k * s + n * s * d
    else:
        embed = n * k * s + 2 * n * s * s + n * s * d
    h = cfg.mlp_hidden
    per_block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * h
    return 2 * (embed + cfg.depth * per_block)


def _clock(kind: str):
    """``time.perf_counter`` (wall) or ``time.thread_time`` (CPU time of this thread)."""
    return time.perf_counter if kind == "wall" else time.thread_time


def matmul_gflops(n: int = 4096, repeats: int = 3, clock: str = "wall") -> float:
    """Best fp32 ``torch.matmul`` throughput (GFLOP/s) for n x n matrices."""
    now = _clock(clock)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = now()
        torch.matmul(a, b)
        best = min(best, now() - t0)
    return 2 * n**3 / best / 1e9


def _time_batch(model, x: torch.Tensor, modality: str, iters: int, clock: str) -> float:
    now = _clock(clock)
    with torch.inference_mode():
        t0 = now()
        for _ in range(iters):
            model(x, modality=modality)
        return (now() - t0) / iters


def measure(model, x: torch.Tensor, modality: str, rounds: int, iters: int,
            clock: str) -> dict:
    """Best seconds per batch of each path and the best matmul GFLOP/s, interleaved."""
    best = {True: float("inf"), False: float("inf")}
    for folded in (True, False):  # warm-up: builds the folded weights, primes allocators
        model.use_folded = folded
        _time_batch(model, x, modality, 1, clock)
    peak = matmul_gflops(clock=clock)
    for _ in range(rounds):
        for folded in (True, False):
            model.use_folded = folded
            best[folded] = min(best[folded], _time_batch(model, x, modality, iters, clock))
        peak = max(peak, matmul_gflops(repeats=2, clock=clock))
    model.use_folded = True
    return {"fused_s": best[True], "unfused_s": best[False], "matmul_gflops": peak}


def machine_description() -> dict:
    """CPU model, core count and library versions."""
    model_name = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _figures(raw: dict, flops: dict, batch: int) -> dict:
    out = {
        "fused_images_per_s": batch / raw["fused_s"],
        "unfused_images_per_s": batch / raw["unfused_s"],
        "speedup": raw["unfused_s"] / raw["fused_s"],
        "fused_gflops": flops[True] / raw["fused_s"] / 1e9,
        "unfused_gflops": flops[False] / raw["unfused_s"] / 1e9,
        "matmul_gflops": raw["matmul_gflops"],
    }
    out["fused_fraction_of_matmul"] = out["fused_gflops"] / out["matmul_gflops"]
    out["unfused_fraction_of_matmul"] = out["unfused_gflops"] / out["matmul_gflops"]
    return out


def _report(title: str, r: dict) -> None:
    print(f"  {title}")
    print(f"    fused   : {r['fused_images_per_s']:6.2f} images/s  {r['fused_gflops']:6.1f} GFLOP/s")
    print(f"    unfused : {r['unfused_images_per_s']:6.2f} images/s  "
          f"{r['unfused_gflops']:6.1f} GFLOP/s")
    print(f"    speed-up fused/unfused: {r['speedup']:.3f}x (target >= 1.08)")
    print(f"    fp32 matmul {r['matmul_gflops']:.1f} GFLOP/s; fused achieves "
          f"{100 * r['fused_fraction_of_matmul']:.0f}%, unfused "
          f"{100 * r['unfused_fraction_of_matmul']:.0f}% of it (target >= 70%)")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print a report and return the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="terrafm-b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--modality", default="s2_l2a")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=1, help="batches per timed round")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the wall-clock run (default: all cores)")
    ap.add_argument("--no-cpu-time", action="store_true",
                    help="skip the single-thread CPU-time run")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    model = load_model(args.variant)
    cfg = model.config
    c = cfg.in_channels[args.modality]
    x = torch.randn(args.batch, c, args.size, args.size)
    flops = {f: encoder_flops(cfg, args.size, args.size, args.modality, f) * args.batch
             for f in (True, False)}
    load_before = os.getloadavg()[0]
    res: dict = {
        "variant": args.variant, "batch": args.batch, "size": args.size,
        "modality": args.modality,
        "fused_gflop_per_image": flops[True] / args.batch / 1e9,
        "unfused_gflop_per_image": flops[False] / args.batch / 1e9,
        **machine_description(),
    }
    wall = _figures(measure(model, x, args.modality, args.rounds, args.iters, "wall"),
                    flops, args.batch)
    res["wall"] = {"threads": threads, **wall}
    if not args.no_cpu_time:
        # CPU time of one thread: insensitive to other processes sharing the cores.
        torch.set_num_threads(1)
        cpu = _figures(measure(model, x, args.modality, args.rounds, args.iters,
                               "cpu"), flops, args.batch)
        res["cpu_time_1_thread"] = {"threads": 1, **cpu}
        torch.set_num_threads(threads)
    res["load_average_1min"] = [load_before, os.getloadavg()[0]]

    print(f"TerraFM encoder benchmark: {args.variant}, batch {args.batch}, "
          f"{args.size}x{args.size} px, {args.modality}")
    print(f"  machine: {res['cpu']}, {res['logical_cpus']} logical CPUs, torch {res['torch']}; "
          f"1-min load average {load_before:.2f} before, {res['load_average_1min'][1]:.2f} after")
    print(f"  model: {res['fused_gflop_per_image']:.2f} GFLOP/image fused, "
          f"{res['unfused_gflop_per_image']:.2f} unfused (2 FLOPs per multiply-add)")
    _report(f"wall clock, {threads} threads, best of {args.rounds} interleaved rounds:", wall)
    if "cpu_time_1_thread" in res:
        _report("CPU time of 1 thread (robust to other load):", res["cpu_time_1_thread"])
    if args.json:
        print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
