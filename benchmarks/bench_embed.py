"""Benchmark: end-to-end embedding (COGs → LocalCluster → Zarr) versus the bare model.

Prints

1. ``ratio``: wall time to embed a synthetic 12-band Sentinel-2 L2A scene of at least 100
   windows of 224 px from its COGs (through ``xterrafm.io.load_stac``) to a Zarr store on a
   LocalCluster of processes, divided by the time of the bare model on the same windows already
   in memory (normalised), with the same batch size and the same total number of threads.
   Target on CPU: <= 1.15. The two are timed alternately ``--repeat`` times; ``ratio`` is best
   over best, ``ratio_pairwise_median`` the median of the ratios of neighbouring runs (the
   bare model alone varies by up to 25 % from run to run on a shared 2-core VM).
2. ``memory``: peak resident memory per worker (max over workers, ``VmHWM``) when embedding
   the scene at 1x and at 4x its area, on fresh clusters; the 4x / 1x growth must be <= 1.2
   (streaming: memory does not follow the scene size).

Usage::

    python benchmarks/bench_embed.py [--model terrafm-b] [--side 2240] [--workers 2]
                                     [--memory-model terrafm-tiny] [--skip-memory]

Weights are the seeded random initialisation written to a safetensors file first (as a user
would pass a weights file); the timing does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine_info import describe_machine
from workdir import bench_workdir


def _machine() -> str:
    import torch

    return describe_machine(torch=torch.__version__)


def _weights(model: str, root: Path) -> str:
    from xterrafm.weights import convert_weights, load_model

    path = root / f"{model}.safetensors"
    if not path.exists():
        convert_weights(load_model(model).state_dict(), path)
    return str(path)


def _scene(root: Path, side: int):
    from xterrafm.datasets import make_synthetic_scene

    return make_synthetic_scene(root / f"scene-{side}", seed=0, width=side, height=side,
                                n_dates=1, modalities=("s2_l2a",), nodata_date=None,
                                cloud_fraction=0.0, overwrite=True)


def _warm_imports() -> None:
    """Import the heavy libraries in a worker (part of starting a cluster, not of a job)."""
    import rasterio  # noqa: F401
    import torch  # noqa: F401
    import zarr  # noqa: F401

    import xterrafm.embedding.blocks  # noqa: F401
    import xterrafm.io  # noqa: F401
    import xterrafm.normalization  # noqa: F401
    import xterrafm.weights  # noqa: F401


def add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    """``--scheduler``: the end-to-end cluster's scheduler settings (see :func:`_cluster`)."""
    parser.add_argument("--scheduler", choices=("xterrafm", "distributed"), default="xterrafm",
                        help="scheduler settings of the end-to-end cluster: those of the "
                             "clusters xterrafm starts, or distributed's defaults (a user's own "
                             "cluster)")


def _cluster(workers: int, threads: int = 1, scheduler: str = "xterrafm"):
    """A LocalCluster of processes with the scheduler settings of the clusters xterrafm starts
    (``scheduler="xterrafm"``: ``xterrafm.batch.clusters.local_scheduler_config``) or with
    distributed's defaults (``"distributed"``: a user's own ``LocalCluster()``)."""
    import contextlib

    import dask
    from distributed import Client, LocalCluster

    from xterrafm.batch.clusters import local_scheduler_config

    config = (dask.config.set(local_scheduler_config()) if scheduler == "xterrafm"
              else contextlib.nullcontext())
    with config:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                               dashboard_address=":0")
    client = Client(cluster)
    client.run(_warm_imports)
    return cluster, client


def _peak_rss_mib() -> float:
    """Peak resident memory of this process's own image (``VmHWM``; ``ru_maxrss`` would
    include the parent's peak, inherited across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load(scene, chunk: int | None):
    from xterrafm.io import load_stac

    chunks = {"time": 1, "y": chunk, "x": chunk} if chunk else None
    return load_stac(scene.item_collections["s2_l2a"], modality="s2_l2a", chunks=chunks)


def run_end_to_end(scene, weights: str, model: str, workers: int, batch: int, tile: int,
                   out: Path, chunk: int | None = None, wave_size: int | None = None,
                   threads: int = 1, precision: str = "auto", profile: bool = False,
                   scheduler: str = "xterrafm") -> dict:
    """Embed the scene to Zarr on a fresh LocalCluster (``scheduler``: see :func:`_cluster`);
    wall time and worker peak memory (``profile``: also where the workers' time went, from a
    task stream)."""
    import contextlib

    from distributed import get_task_stream

    from xterrafm.store import embed_to_zarr

    cluster, client = _cluster(workers, threads, scheduler)
    try:
        cube = _load(scene, chunk)
        stream = get_task_stream(client) if profile else contextlib.nullcontext()
        wall0 = time.time()
        t0 = time.perf_counter()
        with stream as ts:
            summary = embed_to_zarr(cube, out, client=client, model=model, weights=weights,
                                    tile=tile, batch_size=batch, overwrite=True,
                                    progress=False,
                                    wave_size=wave_size or "auto", precision=precision)
        seconds = time.perf_counter() - t0
        streamed = task_stream_summary(ts.data, wall0, wall0 + seconds) if profile else None
        resolved = _store_precision(out)
        rss = client.run(_peak_rss_mib)
        saturation = str(cluster.scheduler.WORKER_SATURATION)
    finally:
        client.close()
        cluster.close()
    return {"seconds": seconds, "windows": summary.counts.written.cells,
            "blocks": summary.counts.blocks_total, "peak_rss_mib": max(rss.values()),
            "precision": resolved, "worker_saturation": saturation,
            **({"task_stream": streamed} if profile else {})}


def task_stream_summary(records: list[dict], start: float, stop: float) -> dict:
    """Where the workers' time went: compute seconds per task prefix, idle thread time, and
    the delay from the call to the first forward pass and from the last one to the end.

    ``records`` are distributed task-stream records; ``start``/``stop`` the job's wall clock.
    """
    per: dict[str, float] = {}
    first_model, last_model = None, None
    busy: dict[tuple, float] = {}
    for r in records:
        prefix = str(r["key"][0] if isinstance(r["key"], tuple) else r["key"]).split("-")[0]
        for ss in r["startstops"]:
            if ss["action"] != "compute":
                continue
            per[prefix] = per.get(prefix, 0.0) + ss["stop"] - ss["start"]
            busy[(r["worker"], r.get("thread"))] = (busy.get((r["worker"], r.get("thread")),
                                                             0.0) + ss["stop"] - ss["start"])
            if prefix.startswith("terrafm") or prefix.startswith("embed"):
                first_model = min(first_model or ss["start"], ss["start"])
                last_model = max(last_model or ss["stop"], ss["stop"])
    return {"compute_s_by_prefix": {k: round(v, 2) for k, v in sorted(per.items(),
                                                                      key=lambda kv: -kv[1])},
            "threads_busy_s": {str(k[1]): round(v, 2) for k, v in busy.items()},
            "first_model_task_after_s": round(first_model - start, 2) if first_model else None,
            "after_last_model_task_s": round(stop - last_model, 2) if last_model else None}


def _store_precision(out: Path) -> str:
    """The precision a store's embeddings were computed at (``"auto"`` resolved)."""
    import zarr

    return str(zarr.open_group(str(out), mode="r")["embeddings"].attrs["precision"])


def run_bare_model(scene, weights: str, model: str, threads: int, batch: int,
                   tile: int, precision: str = "auto") -> dict:
    """The same windows, normalised in memory, through the model alone."""
    import torch

    import xterrafm
    from xterrafm.io import load_stac

    cube = load_stac(scene.item_collections["s2_l2a"], modality="s2_l2a")
    pixels = xterrafm.normalize(cube.values, "s2_l2a")  # (T, C, H, W)
    pixels = np.where(np.isfinite(pixels), pixels, 0).astype(np.float32)
    t_len, c, h, w = pixels.shape
    windows = [pixels[t, :, y:y + tile, x:x + tile] for t in range(t_len)
               for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)]
    from xterrafm.models.precision import resolve_precision

    net = xterrafm.load_model(model, weights, precision=resolve_precision(precision, "cpu"))
    torch.set_num_threads(threads)
    with torch.inference_mode():
        net(torch.from_numpy(np.stack(windows[:batch])), modality="s2_l2a")  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(windows), batch):
            net(torch.from_numpy(np.stack(windows[i:i + batch])), modality="s2_l2a")
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "windows": len(windows)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--side", type=int, default=2240, help="scene side in px (2240: 100 windows)")
    p.add_argument("--tile", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="dask threads per worker (torch uses 1 thread per dask thread)")
    p.add_argument("--repeat", type=int, default=3,
                   help="alternate end-to-end and bare-model runs this often; best of each")
    p.add_argument("--memory-model", default=None,
                   help="model of the memory runs (default: --model)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-ratio", action="store_true")
    p.add_argument("--chunk", type=int, default=None,
                   help="reader chunk side in px (default: xterrafm.io's, 1120)")
    p.add_argument("--memory-chunk", type=int, default=448,
                   help="reader chunk side of the memory runs (small blocks: steady state)")
    p.add_argument("--wave-size", type=int, default=None, help="blocks per wave (default: embed_to_zarr's 'auto')")
    p.add_argument("--precision", default="auto", help="precision of both (default: auto)")
    add_scheduler_option(p)
    p.add_argument("--profile", action="store_true",
                   help="also print a task-stream summary of one extra end-to-end run")
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)

    result: dict = {"machine": _machine(), "model": a.model, "side": a.side, "tile": a.tile,
                    "batch": a.batch, "workers": a.workers, "chunk": a.chunk or 1120,
                    "scheduler": a.scheduler}
    with bench_workdir(a.workdir, "bench_embed-") as root:
        scene = _scene(root, a.side)
        if not a.skip_ratio:
            weights = _weights(a.model, root)
            _warm_imports()  # the client imports torch too, as the bare-model run does
            threads = a.workers * a.threads_per_worker
            e2e_s, bare_s = [], []
            for _ in range(max(1, a.repeat)):
                e2e = run_end_to_end(scene, weights, a.model, a.workers, a.batch, a.tile,
                                     root / "e2e.zarr", a.chunk, threads=a.threads_per_worker,
                                     precision=a.precision, scheduler=a.scheduler)
                bare = run_bare_model(scene, weights, a.model, threads, a.batch, a.tile,
                                      precision=a.precision)
                e2e_s.append(e2e["seconds"])
                bare_s.append(bare["seconds"])
            e2e["seconds"], bare["seconds"] = min(e2e_s), min(bare_s)
            result.update(threads_per_worker=a.threads_per_worker,
                          end_to_end_runs_s=[round(x, 2) for x in e2e_s],
                          bare_model_runs_s=[round(x, 2) for x in bare_s])
            result.update(end_to_end_s=round(e2e["seconds"], 2), bare_model_s=round(bare["seconds"], 2),
                          windows=e2e["windows"], ratio=round(e2e["seconds"] / bare["seconds"], 3),
                          ratio_pairwise_median=round(float(np.median(
                              [a / b for a, b in zip(e2e_s, bare_s, strict=True)])), 3))
            result["precision_resolved"] = e2e["precision"]
            print(json.dumps(result), flush=True)
            if a.profile:
                prof = run_end_to_end(scene, weights, a.model, a.workers, a.batch, a.tile,
                                      root / "e2e.zarr", a.chunk, threads=a.threads_per_worker,
                                      precision=a.precision, profile=True,
                                      scheduler=a.scheduler)
                result["profiled_run"] = {"seconds": round(prof["seconds"], 2),
                                          **prof["task_stream"]}
                print(json.dumps(result["profiled_run"]), flush=True)
        if not a.skip_memory:
            mem_model = a.memory_model or a.model
            weights = _weights(mem_model, root)
            one = run_end_to_end(scene, weights, mem_model, a.workers, a.batch, a.tile,
                                 root / "mem1.zarr", a.memory_chunk, a.wave_size)
            big = _scene(root, 2 * a.side)
            four = run_end_to_end(big, weights, mem_model, a.workers, a.batch, a.tile,
                                  root / "mem4.zarr", a.memory_chunk, a.wave_size)
            result.update(memory_model=mem_model, memory_chunk=a.memory_chunk,
                          wave_size=a.wave_size or "auto",
                          blocks_1x=one["blocks"], blocks_4x=four["blocks"], peak_rss_1x_mib=round(one["peak_rss_mib"], 1),
                          peak_rss_4x_mib=round(four["peak_rss_mib"], 1),
                          windows_4x=four["windows"],
                          memory_growth=round(four["peak_rss_mib"] / one["peak_rss_mib"], 3))
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
