"""Pretraining data pipeline vs train step (tiny config, CPU), and vs xbatcher.

Measures, on a synthetic scene written to a Zarr training cube (chunks of 224 px):

1. loader throughput: multi-crop samples/s (all views: 2 global + N local, every modality
   subset) of ``TileDataset`` through a ``DataLoader`` with ``--workers`` workers;
2. train-step consumption: samples/s the tiny-config train step consumes, and the fraction of
   wall time the training loop waits for data, from a real ``xterrafm.pretrain.train`` run
   with ``--workers`` workers (the goal: data wait <= 5 % with 2 workers);
3. raw window reads: tiles/s of ``TileDataset`` (chunk-aligned reads, no views) against
   xbatcher's ``BatchGenerator`` reading the same 112 px windows (date 0 of every modality
   and the land cover, normalised) from the same Zarr cube, and their ratio (best of 3
   interleaved rounds each).

Not a test: run by hand, ``python benchmarks/bench_pretrain.py [--size 896] [--steps 40]
[--workers 2] [--write]``; ``--write`` replaces the "Pretraining" section of
docs/benchmarks.md with the results and the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine_info import describe_machine
from torch.utils.data import DataLoader

from xterrafm.data import TileDataset
from xterrafm.io import open_training_cube
from xterrafm.normalization import normalize
from xterrafm.pretrain import build_dataset, load_config, train

SECTION = "## Pretraining (bench_pretrain.py)"


def make_cube(root: Path, size: int, chunk: int) -> Path:
    """Synthetic scene (seed 0, 2 dates, all modalities) -> training cube in Zarr."""
    from xterrafm.datasets import write_synthetic_training_cube

    return write_synthetic_training_cube(root, size=size, n_dates=2, chunk_px=chunk)


def loader_rate(config, cube: Path, workers: int, epochs: int) -> tuple[float, int]:
    """Multi-crop samples/s of the DataLoader over ``epochs`` epochs (worker start included)."""
    ds = build_dataset(config, [cube])
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    n = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            n += int(batch["tile"].shape[0])
    return n / (time.perf_counter() - t0), n


def train_rates(config, cube: Path, steps: int, out: Path) -> dict[str, float]:
    """Samples/s, compute-only samples/s and data-wait fraction of a real training run."""
    train(config, [cube], out, max_steps=steps)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = rows[min(3, len(rows) - 1):]  # skip worker start-up
    step_s = np.array([config.batch_size / r["samples_per_s"] for r in rows])
    wait_s = np.array([r["data_wait_fraction"] for r in rows]) * step_s
    return {
        "samples_per_s": config.batch_size * len(rows) / step_s.sum(),
        "compute_samples_per_s": config.batch_size * len(rows) / (step_s - wait_s).sum(),
        "data_wait_fraction": float(wait_s.sum() / step_s.sum()),
    }


def first_date_cube(cube: Path):
    """The training cube restricted to date 0 of every modality (lazy, no dask)."""
    ds = open_training_cube(cube)
    mods = [m for m in ("s1", "s2_l1c", "s2_l2a") if m in ds]
    return ds[[*mods, "landcover"]].isel({f"{m}_time": [0] for m in mods}), mods


def ours_raw_rate(cube: Path, tile: int) -> tuple[float, int]:
    """Tiles/s of TileDataset reading raw normalised tiles (date 0 of every modality)."""
    ds_xr, _ = first_date_cube(cube)
    ds = TileDataset(ds_xr, tile_size=tile, sampling="uniform", min_valid_fraction=0.0)
    t0 = time.perf_counter()
    n = sum(1 for _ in ds)
    return n / (time.perf_counter() - t0), n


def xbatcher_rate(cube: Path, tile: int) -> tuple[float, int]:
    """Windows/s of xbatcher.BatchGenerator over the same cube, reading the same content."""
    import xbatcher

    ds, mods = first_date_cube(cube)
    # one generator per variable (their band dims differ), walking the same windows in step
    arrays = {m: ds[m].isel({f"{m}_time": 0}).transpose(f"{m}_band", "y", "x") for m in mods}
    arrays["landcover"] = ds["landcover"]
    gens = {k: xbatcher.BatchGenerator(a, input_dims={"y": tile, "x": tile})
            for k, a in arrays.items()}
    t0 = time.perf_counter()
    n = 0
    for windows in zip(*gens.values(), strict=True):
        for name, window in zip(gens, windows, strict=True):
            values = window.values
            if name != "landcover":
                np.nan_to_num(normalize(values, name))
        n += 1
    return n / (time.perf_counter() - t0), n


def best_of(rounds: int, *funcs):
    """Interleave ``rounds`` runs of each rate function; keep each one's best (fastest) run."""
    best = [(0.0, 0)] * len(funcs)
    for _ in range(rounds):
        for i, f in enumerate(funcs):
            rate = f()
            best[i] = max(best[i], rate)
    return best


def machine() -> str:
    """One-line description of this machine."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{describe_machine(torch=torch.__version__)} ({torch.get_num_threads()} threads), "
            f"load average at start {load:.1f}")


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the Pretraining section of ``path``, leaving the rest untouched."""
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    start = body.find(SECTION)
    if start < 0:
        body = body.rstrip("\n") + "\n\n" + text
    else:
        end = body.find("\n## ", start + len(SECTION))
        body = body[:start] + text + ("" if end < 0 else body[end:])
    path.write_text(body if body.endswith("\n") else body + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=896, help="scene side in px")
    parser.add_argument("--steps", type=int, default=40, help="training steps to time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="loader epochs to time")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    desc = machine()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cube = make_cube(root, args.size, 224)
        config = load_config("tiny", {"num_workers": args.workers, "progress": False,
                                      "checkpoint_every": 10_000, "total_steps": 100})
        ld_rate, ld_n = loader_rate(config, cube, args.workers, args.epochs)
        tr = train_rates(config, cube, args.steps, root / "run")
        (ours, n_ours), (xb, n_xb) = best_of(
            3, lambda: ours_raw_rate(cube, config.tile_size),
            lambda: xbatcher_rate(cube, config.tile_size))
    views = 2 + config.n_local_crops
    lines = [
        SECTION, "",
        f"Machine: {desc}. Tiny config ({config.model}, batch {config.batch_size}, "
        f"{config.tile_size} px tiles, 2 x {config.global_crop_size} px + "
        f"{config.n_local_crops} x {config.local_crop_size} px views), synthetic "
        f"{args.size} x {args.size} px scene (S1, S2 L1C, S2 L2A, 2 dates) in a Zarr training "
        "cube with 224 px chunks. Run: `python benchmarks/bench_pretrain.py --write`.", "",
        "| measure | value |", "|---|---|",
        f"| loader, {args.workers} workers: samples/s (each sample = {views} views) | "
        f"{ld_rate:.1f} ({ld_n} samples) |",
        f"| train step consumption (compute only): samples/s | "
        f"{tr['compute_samples_per_s']:.1f} |",
        f"| training run, {args.workers} workers: samples/s | {tr['samples_per_s']:.1f} |",
        f"| training run: data-wait fraction (goal <= 5 %) | "
        f"{100 * tr['data_wait_fraction']:.1f} % |",
        f"| raw tiles/s (date 0), TileDataset (chunk-aligned) | {ours:.1f} ({n_ours} tiles) |",
        f"| raw windows/s, xbatcher BatchGenerator, same windows | {xb:.1f} ({n_xb}) |",
        f"| ratio TileDataset / xbatcher | {ours / xb:.2f} |", "",
        "Loader rate over train-step consumption: "
        f"{ld_rate / tr['compute_samples_per_s']:.1f}x. Absolute numbers move with the machine's "
        "load (its average at the start is above); the ratios are the result.", "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md", text)


if __name__ == "__main__":
    main()
