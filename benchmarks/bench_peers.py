"""Benchmark: xterrafm end to end against the loops users write by hand, interleaved.

On one synthetic Sentinel-2 L2A scene (12 COGs, 10/20/60 m bands) and the same windows
(``--tile`` px, stride = tile, one date), each round times, one after the other:

``xterrafm``
    ``embed_to_zarr`` from the COGs (``xterrafm.io.load_stac``) on a LocalCluster to a Zarr
    store, ``precision=--precision`` (default ``"auto"``: bf16 where the CPU has it natively),
    model build in the workers included, cluster start excluded (as in ``bench_embed.py``).
``hand_loop``
    What a user writes with rasterio and the published code: for each window, a windowed
    ``rasterio`` read of every band (bilinear resampling of the 20/60 m bands to 10 m),
    calibration to reflectance, ``xterrafm.normalize``, batches of ``--batch`` through the
    published computation in float32 (unfolded patch embedding, explicit attention:
    ``published_model.py``), embeddings kept in memory. Weights loading included.
``xbatcher``
    An ``xbatcher.BatchGenerator`` over the lazy ``load_stac`` cube (chunks of one window),
    each patch computed and normalised, batches through the same published computation.
    Skipped with a reason when xbatcher is not installed.

All use the same total number of threads (``--threads``: the cluster's dask threads, torch's
threads in the loops). Prints one JSON line per round, then a summary: best seconds of each,
``speedup_vs_hand_loop`` (best hand loop / best xterrafm) and the median over rounds of the
per-round ratio (the machine is shared: neighbouring runs are compared, not absolute times).

Usage::

    python benchmarks/bench_peers.py [--model terrafm-b] [--side 2240] [--tile 224]
                                     [--rounds 3] [--threads 2] [--precision auto]

Weights are the seeded random initialisation written to a safetensors file (speed does not
depend on their values).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_embed import _load, _scene, _weights, add_scheduler_option, run_end_to_end
from machine_info import describe_machine
from workdir import bench_workdir

MODALITY = "s2_l2a"


def _published_state(weights: str):
    from safetensors.torch import load_file

    return load_file(weights)


def _reflectance(dn: np.ndarray, offset: float, nodata: float | None) -> np.ndarray:
    """L2A digital numbers to reflectance: ``(DN + offset) / 10000``; nodata becomes NaN."""
    out = (dn.astype(np.float32) + np.float32(offset)) / np.float32(10000)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out


def _forward_batches(windows, state, heads: int, batch: int, out: list) -> None:
    import torch
    from published_model import published_forward

    for i in range(0, len(windows), batch):
        x = np.stack(windows[i:i + batch])
        x = np.where(np.isfinite(x), x, 0).astype(np.float32)
        out.append(published_forward(state, torch.from_numpy(x), MODALITY, heads).numpy())


def _offset(scene) -> float:
    """The L2A offset of the scene's processing baseline (-1000 from baseline 04.00)."""
    major, minor = (int(p) for p in str(scene.processing_baseline).split(".")[:2])
    return -1000.0 if (major, minor) >= (4, 0) else 0.0


def run_hand_loop(scene, weights: str, model: str, threads: int, batch: int,
                  tile: int) -> dict:
    """Windowed rasterio reads feeding the published computation (see the module docstring)."""
    import rasterio
    import torch
    from rasterio.enums import Resampling
    from rasterio.windows import from_bounds

    import xterrafm
    from xterrafm.bands import get_modality
    from xterrafm.models.config import get_config

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    state = _published_state(weights)
    heads = get_config(model).num_heads
    offset = _offset(scene)
    paths = scene.band_paths[MODALITY][0]
    names = get_modality(MODALITY).band_names
    srcs = [rasterio.open(paths[b]) for b in names]
    embeddings: list = []
    try:
        ref = srcs[names.index("B02")]
        h, w = ref.shape
        pending = []
        with torch.inference_mode():
            for y in range(0, h - tile + 1, tile):
                for x in range(0, w - tile + 1, tile):
                    bounds = rasterio.windows.bounds(
                        rasterio.windows.Window(x, y, tile, tile), ref.transform)
                    bands = [s.read(1, window=from_bounds(*bounds, transform=s.transform),
                                    out_shape=(tile, tile), resampling=Resampling.bilinear,
                                    boundless=False)
                             for s in srcs]
                    cube = _reflectance(np.stack(bands), offset, ref.nodata)
                    pending.append(xterrafm.normalize(cube, MODALITY))
                    if len(pending) == batch:
                        _forward_batches(pending, state, heads, batch, embeddings)
                        pending = []
            _forward_batches(pending, state, heads, batch, embeddings)
    finally:
        for s in srcs:
            s.close()
    seconds = time.perf_counter() - t0
    emb = np.concatenate(embeddings)
    return {"seconds": seconds, "windows": int(emb.shape[0]), "embeddings": emb}


def run_xbatcher(scene, weights: str, model: str, threads: int, batch: int, tile: int) -> dict:
    """An xbatcher loop over the lazy cube feeding the published computation."""
    try:
        import xbatcher
    except ImportError as err:
        return {"skipped": f"xbatcher is not installed ({err})"}
    import dask
    import torch

    import xterrafm
    from xterrafm.models.config import get_config

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    state = _published_state(weights)
    heads = get_config(model).num_heads
    cube = _load(scene, tile).isel(time=0)
    gen = xbatcher.BatchGenerator(cube, input_dims={"y": tile, "x": tile})
    embeddings: list = []
    pending = []
    with torch.inference_mode(), dask.config.set(scheduler="threads", num_workers=threads):
        for patch in gen:
            pending.append(xterrafm.normalize(np.asarray(patch.transpose("band", "y", "x")),
                                              MODALITY))
            if len(pending) == batch:
                _forward_batches(pending, state, heads, batch, embeddings)
                pending = []
        _forward_batches(pending, state, heads, batch, embeddings)
    seconds = time.perf_counter() - t0
    emb = np.concatenate(embeddings)
    return {"seconds": seconds, "windows": int(emb.shape[0]), "embeddings": emb}


def _xterrafm(scene, weights, a, root: Path) -> dict:
    out = run_end_to_end(scene, weights, a.model, a.workers, a.batch, a.tile,
                         root / "peers.zarr", a.chunk, threads=a.threads // a.workers,
                         precision=a.precision, scheduler=a.scheduler)
    import xarray as xr

    with xr.open_zarr(root / "peers.zarr") as ds:  # (time, embedding, y, x), row-major windows
        emb = ds["embeddings"].isel(time=0).values
    out["embeddings"] = emb.reshape(emb.shape[0], -1).T
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(1)
    return float((num / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def _summary(rounds: list[dict]) -> dict:
    out: dict = {}
    names = [n for n in ("xterrafm", "hand_loop", "xbatcher") if "seconds" in rounds[0][n]]
    for n in names:
        out[f"{n}_runs_s"] = [round(r[n]["seconds"], 2) for r in rounds]
        out[f"{n}_best_s"] = round(min(r[n]["seconds"] for r in rounds), 2)
    best = out["xterrafm_best_s"]
    for n in names[1:]:
        out[f"speedup_vs_{n}"] = round(out[f"{n}_best_s"] / best, 3)
        out[f"speedup_vs_{n}_median_of_rounds"] = round(float(np.median(
            [r[n]["seconds"] / r["xterrafm"]["seconds"] for r in rounds])), 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--side", type=int, default=2240, help="scene side in px")
    p.add_argument("--tile", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="threads of every contender")
    p.add_argument("--workers", type=int, default=1, help="LocalCluster worker processes")
    p.add_argument("--chunk", type=int, default=None, help="xterrafm reader chunk side (px)")
    p.add_argument("--precision", default="auto", help="xterrafm's precision")
    p.add_argument("--rounds", type=int, default=3)
    add_scheduler_option(p)
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)
    if a.threads % a.workers:
        p.error("--threads must be a multiple of --workers")

    import torch

    from xterrafm.embedding.runtime import precision_report

    result: dict = {"machine": describe_machine(torch=torch.__version__), "model": a.model,
                    "side": a.side, "tile": a.tile, "batch": a.batch, "threads": a.threads,
                    "workers": a.workers, "precision": a.precision, "scheduler": a.scheduler,
                    "auto_here": precision_report("cpu")}
    with bench_workdir(a.workdir, "bench_peers-") as root:
        scene = _scene(root, a.side)
        weights = _weights(a.model, root)
        rounds = []
        for i in range(max(1, a.rounds)):
            r = {"xterrafm": _xterrafm(scene, weights, a, root),
                 "hand_loop": run_hand_loop(scene, weights, a.model, a.threads, a.batch,
                                            a.tile),
                 "xbatcher": run_xbatcher(scene, weights, a.model, a.threads, a.batch, a.tile)}
            if i == 0:
                result["min_cosine_xterrafm_vs_hand"] = round(_cosine(
                    r["xterrafm"]["embeddings"], r["hand_loop"]["embeddings"]), 5)
            if i == 0 and "embeddings" in r["xbatcher"]:
                result["min_cosine_hand_vs_xbatcher"] = round(_cosine(
                    r["hand_loop"]["embeddings"], r["xbatcher"]["embeddings"]), 5)
            for v in r.values():
                v.pop("embeddings", None)
            print(json.dumps({"round": i, **{k: {kk: (round(vv, 2) if isinstance(vv, float)
                                                      else vv) for kk, vv in v.items()}
                                                for k, v in r.items()}}), flush=True)
            rounds.append(r)
        result["windows"] = rounds[0]["xterrafm"]["windows"]
        result["xterrafm_precision"] = rounds[0]["xterrafm"].get("precision")
        if "skipped" in rounds[0]["xbatcher"]:
            result["xbatcher"] = rounds[0]["xbatcher"]["skipped"]
        result.update(_summary(rounds))
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
