"""Benchmark: how the cost of embedding grows with the area.

Prints

1. ``area``: wall time and peak worker memory (``VmHWM``) of ``embed_to_zarr`` from COGs on a
   fresh LocalCluster for 1x, 4x and 16x the area of a synthetic Sentinel-2 L2A scene (same
   reader chunks, same model), with the ratios to 1x. Targets: time grows linearly with the
   area (ratio about 4 and 16), memory stays flat (ratio about 1).
2. ``graph``: time to build the lazy embedding graph (plan + graph, no compute) of a
   Sentinel-2 tile stack of ``--graph-side``\\ :sup:`2` px and ``--graph-dates`` dates
   (default 10980 px x 10 dates: a 110 km MGRS tile), the number of blocks and of tasks in the
   materialised graph, and the same at a quarter of the area: tasks must grow no faster than
   blocks.

Usage::

    python benchmarks/bench_scaling.py [--model terrafm-tiny] [--side 448] [--chunk 448]
                                       [--skip-area] [--skip-graph]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_embed import _machine, _scene, _weights, run_end_to_end


def graph_build(side: int, dates: int, chunk: int, model: str) -> dict:
    """Build (not compute) the embedding graph of a lazy ``(dates, 12, side, side)`` cube."""
    import dask.array as da
    import numpy as np
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    import xterrafm
    from xterrafm.bands import get_modality

    geobox = GeoBox.from_bbox((300000, 5000000, 300000 + 10 * side, 5000000 + 10 * side),
                              "EPSG:32633", resolution=10)
    bands = list(get_modality("s2_l2a").band_names)
    data = da.zeros((dates, len(bands), side, side), chunks=(1, -1, chunk, chunk),
                    dtype="float32")
    coords = dict(xr_coords(geobox, crs_coord_name="spatial_ref"))
    coords["time"] = np.array([f"2024-{m:02d}-01" for m in range(1, dates + 1)],
                              dtype="datetime64[ns]")
    coords["band"] = bands
    cube = xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords)
    t0 = time.perf_counter()
    emb = xterrafm.embed(cube, model=model, modality="s2_l2a", calibration="none")
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_tasks = len(dict(emb.data.__dask_graph__()))
    materialise_s = time.perf_counter() - t1
    return {"side": side, "dates": dates, "chunk": chunk, "blocks": int(np.prod(data.numblocks)),
            "tasks": n_tasks, "build_s": round(build_s, 3),
            "materialise_s": round(materialise_s, 3), "output_shape": list(emb.shape)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="terrafm-tiny")
    p.add_argument("--side", type=int, default=448, help="side (px) of the 1x scene")
    p.add_argument("--chunk", type=int, default=448, help="reader chunk side (px)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads-per-worker", type=int, default=2)
    p.add_argument("--graph-side", type=int, default=10980)
    p.add_argument("--graph-dates", type=int, default=10)
    p.add_argument("--graph-chunk", type=int, default=1120)
    p.add_argument("--skip-area", action="store_true")
    p.add_argument("--skip-graph", action="store_true")
    a = p.parse_args(argv)
    import warnings

    from xterrafm.errors import RandomWeightsWarning

    warnings.simplefilter("ignore", RandomWeightsWarning)
    result: dict = {"machine": _machine()}
    if not a.skip_graph:
        graph_build(a.graph_chunk, 1, a.graph_chunk, "terrafm-b")  # warm-up: imports, model spec
        full = graph_build(a.graph_side, a.graph_dates, a.graph_chunk, "terrafm-b")
        quarter = graph_build(a.graph_side // 2, a.graph_dates, a.graph_chunk, "terrafm-b")
        result["graph"] = {"full": full, "quarter": quarter,
                           "blocks_ratio": round(full["blocks"] / quarter["blocks"], 3),
                           "tasks_ratio": round(full["tasks"] / quarter["tasks"], 3)}
        print(json.dumps(result["graph"]), flush=True)
    if not a.skip_area:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            weights = _weights(a.model, root)
            runs = {}
            for factor in (1, 4, 16):
                side = a.side * int(factor ** 0.5)
                scene = _scene(root, side)
                r = run_end_to_end(scene, weights, a.model, a.workers, 8, 224,
                                   root / f"area{factor}.zarr", a.chunk,
                                   threads=a.threads_per_worker)
                runs[factor] = {"side": side, **r}
                print(json.dumps({f"area_{factor}x": runs[factor]}), flush=True)
            base = runs[1]
            result["area"] = {
                "runs": runs,
                "time_ratio": {f: round(r["seconds"] / base["seconds"], 2)
                               for f, r in runs.items()},
                "windows_ratio": {f: round(r["windows"] / base["windows"], 2)
                                  for f, r in runs.items()},
                "memory_ratio": {f: round(r["peak_rss_mib"] / base["peak_rss_mib"], 2)
                                 for f, r in runs.items()}}
    print(json.dumps({k: v for k, v in result.items() if k != "area"} |
                     {"area_ratios": {k: v for k, v in result.get("area", {}).items()
                                      if k != "runs"}}, indent=1))
    return result


if __name__ == "__main__":
    main()
