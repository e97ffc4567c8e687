"""Model-side sections of ``gpu_check.py``: matmul peak, encoder throughput, SDPA backends and
host-to-device copies.

Throughput is tiles (224 x 224 px windows of S2 L2A, 12 bands) per second through the TerraFM
encoder's CLS forward pass (``model(x, "s2_l2a")``, folded patch embedding, eval mode,
``torch.inference_mode``), with the input already on the device. Achieved TFLOP/s count the
folded model's matrix products (``bench_encoder.encoder_flops``: 2 FLOPs per multiply-add;
norms, GELU and softmax not counted) and are compared with a matrix product of the same dtype
measured in the same run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from bench_encoder import encoder_flops
from gpu_runner import SkipSection

__all__ = ["host_to_device", "matmul_peak", "peak_tflops", "sdpa_backends", "throughput"]

MODALITY = "s2_l2a"
CHANNELS = 12


def sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (tiny CPU figures stay readable)."""
    return float(f"{x:.{digits}g}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, min_time: float, min_iters: int, max_iters: int,
           warmup: int) -> tuple[float, int]:
    """Seconds per call of ``fn`` (mean over as many calls as fill ``min_time``) and the count."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-6)
    iters = int(min(max_iters, max(min_iters, math.ceil(min_time / one))))
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters, iters


# -- matmul peak ----------------------------------------------------------------------------
def _matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, iters: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec, _ = _timed(lambda: torch.matmul(a, b), device, 0.0, iters, iters, warmup=3)
    return 2 * n**3 / sec / 1e12


def matmul_peak(ctx: Any, rec: dict) -> None:
    """Dense matmul TFLOP/s on random data: bf16, fp32 (full precision) and TF32."""
    fig = rec["figures"]
    n, iters = ctx.sizes["matmul_n"], ctx.sizes["matmul_iters"]
    fig["n"] = n
    fig["bf16_tflops"] = sig(_matmul_tflops(ctx.device, torch.bfloat16, n, iters))
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        fig["fp32_tflops"] = sig(_matmul_tflops(ctx.device, torch.float32, n, max(2, iters // 2)))
        if ctx.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            fig["tf32_tflops"] = sig(_matmul_tflops(ctx.device, torch.float32, n, iters))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    ctx.results["matmul_peak"] = fig


def peak_tflops(ctx: Any, precision: str) -> float:
    """The matmul peak of ``precision`` measured by :func:`matmul_peak` (measured now if that
    section did not run)."""
    if "matmul_peak" not in ctx.results:
        matmul_peak(ctx, {"figures": {}})
    return float(ctx.results["matmul_peak"][f"{precision}_tflops"])


# -- encoder throughput ---------------------------------------------------------------------
def _build(name: str, device: torch.device):
    from xterrafm.weights import load_model

    model = load_model(name, seed=0, device=device)
    model.prepare(MODALITY)
    return model


def _row(ctx: Any, model, name: str, precision: str, mode: str, batch: int) -> dict:
    s = ctx.sizes
    tile = s["tile"]
    model.precision = precision
    x = torch.randn(batch, CHANNELS, tile, tile, device=ctx.device)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    row: dict[str, Any] = {"model": name, "precision": precision, "mode": mode, "batch": batch}
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x, MODALITY)  # first call: compiles in compiled mode
        _sync(ctx.device)
        first = time.perf_counter() - t0
        sec, iters = _timed(lambda: model(x, MODALITY), ctx.device, s["min_time"],
                            s["min_iters"], s["max_iters"], s["warmup"])
    flop = encoder_flops(model.config, tile, tile, MODALITY, folded=True)
    tflops = flop * batch / sec / 1e12
    row.update(tiles_per_s=sig(batch / sec), ms_per_batch=sig(sec * 1e3), iters=iters,
               first_call_s=round(first, 2), gflop_per_tile=sig(flop / 1e9),
               tflops=sig(tflops),
               pct_of_matmul_peak=sig(100 * tflops / peak_tflops(ctx, precision), 3))
    if ctx.device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2)
    return row


def throughput(ctx: Any, rec: dict, mode: str) -> None:
    """Tiles/s of every model x precision x batch of ``ctx.sizes``, eager or compiled
    (``precisions``/``batches``, or ``compile_precisions``/``compile_batches``).

    Compiled: each transformer block through ``torch.compile`` (``ctx.sizes["compile_backend"]``,
    automatic dynamic shapes), a fresh model per (model, precision); ``first_call_s`` holds the
    compile. Rows are written as they are measured; a failing row (e.g. out of memory) records
    its error and the next runs; the budget stops the section between rows.
    """
    s = ctx.sizes
    rows: list[dict] = rec["figures"].setdefault("rows", [])
    rec["figures"]["sdpa"] = _sdpa_flags()
    precisions = s["precisions"] if mode == "eager" else s["compile_precisions"]
    for name in s["models"]:
        model = None
        for precision in precisions:
            if mode == "compiled" or model is None:
                ctx.budget.need(s["compile_need_s"] if mode == "compiled" else s["row_need_s"],
                                f"{name} {precision} {mode}")
                model = _build(name, ctx.device)
                if mode == "compiled":
                    _roomy_dynamo_caches()
                    for blk in model.blocks:
                        blk.compile(backend=s["compile_backend"])
            for batch in s["batches"] if mode == "eager" else s["compile_batches"]:
                ctx.budget.need(s["row_need_s"], f"{name} {precision} {mode} batch {batch}")
                try:
                    row = _row(ctx, model, name, precision, mode, batch)
                    if mode == "compiled":
                        row["dynamo_graphs_so_far"] = _dynamo_graphs()
                except torch.cuda.OutOfMemoryError as err:
                    row = {"model": name, "precision": precision, "mode": mode, "batch": batch,
                           "error": f"out of memory: {str(err).splitlines()[0]}"}
                except Exception as err:  # noqa: BLE001 - recorded per row, the grid goes on
                    row = {"model": name, "precision": precision, "mode": mode, "batch": batch,
                           "error": f"{type(err).__name__}: {err}"[:2000]}
                rows.append(row)
                ctx.report.write()
                if "error" in row and mode == "compiled":
                    break  # the other batch sizes would fail to compile alike
        del model
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    ctx.results[f"throughput_{mode}"] = rows


def _roomy_dynamo_caches() -> None:
    """Let dynamo keep a compiled entry per block, batch shape and precision (24 blocks of
    TerraFM-L would pass its default limit of 8 if each block compiled on its own)."""
    import torch._dynamo

    cfg = torch._dynamo.config
    cfg.cache_size_limit = max(cfg.cache_size_limit, 64)
    if hasattr(cfg, "accumulated_cache_size_limit"):
        cfg.accumulated_cache_size_limit = max(cfg.accumulated_cache_size_limit, 512)


def _dynamo_graphs() -> int | None:
    """Graphs dynamo compiled so far in this process (None where torch does not say)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except (ImportError, KeyError, TypeError):
        return None


def _sdpa_flags() -> dict:
    b = torch.backends.cuda
    return {"flash": b.flash_sdp_enabled(), "mem_efficient": b.mem_efficient_sdp_enabled(),
            "math": b.math_sdp_enabled(),
            "cudnn": getattr(b, "cudnn_sdp_enabled", lambda: None)()}


# -- SDPA backends --------------------------------------------------------------------------
def sdpa_backends(ctx: Any, rec: dict) -> None:
    """Tiles/s of terrafm-b (or the rehearsal's model) in bf16 with each SDPA backend forced."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    s = ctx.sizes
    name, batch = s["models"][0], s["sdpa_batch"]
    model = _build(name, ctx.device)
    model.precision = "bf16"
    x = torch.randn(batch, CHANNELS, s["tile"], s["tile"], device=ctx.device)
    rows = rec["figures"].setdefault("rows", [])
    rec["figures"].update(model=name, batch=batch, precision="bf16")
    choices = [("default", None)] + [(b.name.lower(), b) for b in (
        SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
        SDPBackend.MATH)]
    for label, backend in choices:
        ctx.budget.need(s["row_need_s"], f"SDPA {label}")
        try:
            with torch.inference_mode(), (sdpa_kernel([backend]) if backend is not None
                                          else _null()):
                sec, iters = _timed(lambda: model(x, MODALITY), ctx.device, s["min_time"],
                                    s["min_iters"], s["max_iters"], s["warmup"])
            rows.append({"backend": label, "tiles_per_s": sig(batch / sec), "iters": iters})
        except Exception as err:  # noqa: BLE001 - an unsupported backend is a result
            rows.append({"backend": label, "error": f"{type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}"[:500]})
        ctx.report.write()


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# -- host to device -------------------------------------------------------------------------
def host_to_device(ctx: Any, rec: dict) -> None:
    """Copy bandwidth of one batch of normalised windows (pageable and pinned host memory) and
    the bare model's tiles/s when each batch starts in host memory and the CLS embeddings come
    back (what a block function does), against the same batches already on the device."""
    if ctx.device.type != "cuda":
        raise SkipSection("no CUDA device: there is no host-to-device copy on the CPU")
    s = ctx.sizes
    name, batch, tile = s["models"][0], s["sdpa_batch"], s["tile"]
    fig = rec["figures"]
    host = torch.randn(batch, CHANNELS, tile, tile)
    pinned = host.pin_memory()
    gb = host.numel() * 4 / 1e9
    fig.update(model=name, batch=batch, batch_gb=round(gb, 3))
    for label, src in (("pageable", host), ("pinned", pinned)):
        sec, _ = _timed(lambda src=src: src.to(ctx.device, non_blocking=True), ctx.device,
                        s["min_time"], s["min_iters"], s["max_iters"], s["warmup"])
        fig[f"{label}_gb_per_s"] = round(gb / sec, 2)
    model = _build(name, ctx.device)
    model.precision = "bf16"
    on_device = host.to(ctx.device)
    host_np = host.numpy()  # what a block function holds: a pageable numpy batch
    with torch.inference_mode():
        resident, _ = _timed(lambda: model(on_device, MODALITY), ctx.device, s["min_time"],
                             s["min_iters"], s["max_iters"], s["warmup"])
        from_host, _ = _timed(
            lambda: model(torch.from_numpy(host_np).to(ctx.device), MODALITY).cpu().numpy(),
            ctx.device, s["min_time"], s["min_iters"], s["max_iters"], s["warmup"])
    fig["resident_tiles_per_s"] = round(batch / resident, 1)
    fig["from_pageable_host_tiles_per_s"] = round(batch / from_host, 1)
    fig["copy_share_of_batch_time"] = round(1 - resident / from_host, 3)
