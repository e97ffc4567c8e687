"""Benchmark: an embedding job with the scheduler's root-task queuing on and off, interleaved.

distributed's default ``worker-saturation`` of 1.1 queues root tasks (here: the COG reads) in
the scheduler and hands a worker the next only as one of its threads frees; the LocalClusters
xterrafm starts turn this off (``xterrafm.batch.clusters.LOCAL_WORKER_SATURATION``). Each
round embeds the same synthetic S2 L2A scene from its COGs to Zarr on a fresh LocalCluster
with each setting, in alternating order; prints each run (wall seconds, worker peak RSS), the
medians and ``speedup`` (median with queuing / median without).

Usage::

    python benchmarks/bench_scheduler.py [--side 1120] [--chunk 560] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from bench_embed import _machine, _scene, _warm_imports, _weights, run_end_to_end
from workdir import bench_workdir

SETTINGS = {"distributed": "queuing on (distributed's default)",
            "xterrafm": "queuing off (xterrafm's LocalCluster)"}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--side", type=int, default=1120, help="scene side in px")
    p.add_argument("--chunk", type=int, default=560, help="reader chunk side in px")
    p.add_argument("--tile", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="dask threads of the one worker")
    p.add_argument("--precision", default="auto")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)
    result: dict = {"machine": _machine(), "model": a.model, "side": a.side, "chunk": a.chunk,
                    "threads": a.threads, "settings": SETTINGS}
    runs: dict[str, list[dict]] = {k: [] for k in SETTINGS}
    with bench_workdir(a.workdir, "bench_scheduler-") as root:
        scene = _scene(root, a.side)
        weights = _weights(a.model, root)
        _warm_imports()
        for i in range(max(1, a.rounds)):
            order = list(SETTINGS) if i % 2 == 0 else list(SETTINGS)[::-1]
            for name in order:
                r = run_end_to_end(scene, weights, a.model, 1, a.batch, a.tile,
                                   root / "sched.zarr", a.chunk, threads=a.threads,
                                   precision=a.precision, scheduler=name)
                runs[name].append(r)
                print(json.dumps({"round": i, "scheduler": name, "seconds": round(r["seconds"], 2),
                                  "peak_rss_mib": round(r["peak_rss_mib"], 1),
                                  "windows": r["windows"], "blocks": r["blocks"],
                                  "precision": r["precision"],
                                  "worker_saturation": r["worker_saturation"]}), flush=True)
        for name, rs in runs.items():
            result[name] = {"runs_s": [round(r["seconds"], 2) for r in rs],
                            "median_s": round(float(np.median([r["seconds"] for r in rs])), 2),
                            "peak_rss_mib_max": round(max(r["peak_rss_mib"] for r in rs), 1),
                            "worker_saturation": rs[0]["worker_saturation"]}
        result["windows"] = runs["xterrafm"][0]["windows"]
        result["blocks"] = runs["xterrafm"][0]["blocks"]
        result["speedup"] = round(result["distributed"]["median_s"]
                                  / result["xterrafm"]["median_s"], 3)
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
