"""Benchmark: reading a 12-band Sentinel-2 L2A scene into a cube with ``xterrafm.io.load_stac``.

Writes a synthetic scene (``xterrafm.datasets.make_synthetic_scene``, S2 L2A only, native
10/20/60 m COGs) of ``--side`` x ``--side`` px (default 4480) into a temporary folder (or
``--workdir``, reused on later runs), then for every combination of

* source: ``local`` files, ``http`` (the ItemCollection and COGs served from a child process on
  127.0.0.1 with Range requests, ``tests/helpers/http_server.py``, the tests' loopback server);
* scheduler: dask ``threads`` (the threaded scheduler, ``--threads`` threads) and
  ``cluster`` (a ``distributed.LocalCluster`` of ``--workers`` single-threaded processes),

builds the cube (default chunks, 1120 px) and reads every pixel (a per-chunk reduction, so
the cube is not gathered in one process). Reported per run (best of ``--repeat``):

* ``cube_MBps``: float32 cube bytes produced per second (12 bands on the 10 m grid);
* ``file_MBps``: bytes of the source COGs per second;
* ``tiles_per_s``: 224 x 224 px tiles (all 12 bands) per second.

Usage::

    python benchmarks/bench_io.py [--side 4480] [--repeat 2] [--workers 2] [--threads 2]
                                  [--workdir DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import describe_machine


def _machine() -> str:
    import rasterio

    return describe_machine(Python=platform.python_version(), GDAL=rasterio.__gdal_version__)


def _scene(workdir: Path, side: int) -> tuple[Path, Path, int]:
    """(root, S2 L2A ItemCollection, bytes of its COGs); reuses a scene already in workdir."""
    from xterrafm.datasets import make_synthetic_scene

    root = workdir / f"scene_{side}"
    ic = root / "stac" / "item_collections" / "s2_l2a.json"
    done = root / "complete"
    if not done.exists():
        t0 = time.perf_counter()
        make_synthetic_scene(root, seed=0, width=side, height=side, n_dates=1,
                             modalities=("s2_l2a",), nodata_date=None, overwrite=True)
        done.write_text("ok")
        print(f"# scene {side}x{side} px written in {time.perf_counter() - t0:.1f} s")
    cogs = [p for p in (root / "data").rglob("*.tif") if p.name[0] == "B"]
    if len(cogs) != 12:
        raise RuntimeError(f"expected 12 band COGs under {root / 'data'}, found {len(cogs)}")
    return root, ic, sum(p.stat().st_size for p in cogs)


def _read_all(cube) -> float:
    """Read every pixel; returns the number of finite values (keeps the work honest)."""
    import dask.array as da

    counts = da.map_blocks(lambda b: np.array([[[[np.isfinite(b).sum()]]]]), cube.data,
                           chunks=(1, 1, 1, 1), dtype="int64")
    return float(counts.sum().compute())


def _run(source: str, repeat: int) -> float:
    from xterrafm.io import load_stac

    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        cube = load_stac(source, modality="s2_l2a")
        n = _read_all(cube)
        best = min(best, time.perf_counter() - t0)
        assert n > 0
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=4480)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.side < 4480:
        print("# note: the recorded benchmark uses --side >= 4480")

    import dask
    import distributed

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
    from tests.helpers.http_server import serve_http

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="xterrafm-bench-io-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    root, ic, file_bytes = _scene(workdir, args.side)
    cube_bytes = 12 * args.side * args.side * 4
    tiles = (args.side // 224) ** 2
    print(f"# machine: {_machine()}")
    print(f"# cube {cube_bytes / 1e6:.0f} MB float32, COGs {file_bytes / 1e6:.0f} MB, "
          f"{tiles} tiles of 224 px")

    results = []
    with serve_http(root) as srv:
        sources = {
            "local": str(ic),
            "http": srv.url + "/" + os.path.relpath(ic, root).replace(os.sep, "/"),
        }
        for sched in ("threads", "cluster"):
            if sched == "threads":
                ctx = dask.config.set(scheduler="threads", num_workers=args.threads)
                client = cluster = None
            else:
                cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                                   processes=True, dashboard_address=None)
                client = distributed.Client(cluster)
                ctx = dask.config.set({})
            with ctx:
                for name, src in sources.items():
                    if args.repeat > 1:
                        _run(src, 1)  # warm-up (imports, worker caches)
                    t = _run(src, args.repeat)
                    row = {"source": name, "scheduler": sched, "seconds": round(t, 3),
                           "cube_MBps": round(cube_bytes / 1e6 / t, 1),
                           "file_MBps": round(file_bytes / 1e6 / t, 1),
                           "tiles_per_s": round(tiles / t, 1)}
                    results.append(row)
                    print(json.dumps(row))
            if client is not None:
                client.close()
                cluster.close()
    summary = {"machine": _machine(), "side": args.side, "threads": args.threads,
               "workers": args.workers, "results": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
