"""Benchmark: bytes per km² and quality of embedding stores in float32, float16 and int8.

For each scene seed, a synthetic 12-band Sentinel-2 L2A scene (``--size`` px square, 2 dates,
10 m) is embedded with ``embed_to_zarr`` at the tile level (224 px windows, stride 224) and
the patch level (16 px patches), once per store data type. Prints, per level and dtype:

* ``bytes/km2``: bytes of the stored chunks (``embeddings`` and, for int8, ``scales``;
  compressed as written) per km² of scene per date, and the same uncompressed;
* ``cos_mean``/``cos_min``: cosine similarity of each cell's decoded vector to its float32
  vector (``xterrafm.store.open_embeddings``), over all embedded cells of all seeds;
* patch level: the kNN probe's accuracy (``xterrafm.eval.knn_accuracy``, k=20, T=0.07) on
  the scene's land cover (``xterrafm.eval.labelled_samples``, majority class per patch),
  trained and tested on the two halves of a 4 x 4-patch checkerboard
  (``spatial_block_split``), per seed and pooled with a Wilson 95 % interval, and the share
  of test patches whose predicted class equals the float32 store's. A baseline beside them:
  the same kNN on the normalised band means of each patch (no model).

Weights are the seeded random initialisation of ``--model`` (the published weights cannot
be downloaded here): absolute accuracies are not TerraFM's, and compressed sizes of random
features may differ from those of trained ones; the comparison between data types is the
point. Sizes and quality do not depend on timing; the seconds printed do (shared machine).

Usage::

    python benchmarks/bench_store_dtypes.py [--model terrafm-b] [--size 672] [--seeds 0 1 2]
                                            [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from machine_info import describe_machine

DTYPES = ("float32", "float16", "int8")
LEVELS = ("tile", "patch")


def _machine() -> str:
    import torch
    import zarr

    return describe_machine(torch=torch.__version__, zarr=zarr.__version__)


def _weights(model: str, root: Path) -> str:
    from xterrafm.weights import convert_weights, load_model

    path = root / f"{model}.safetensors"
    if not path.exists():
        convert_weights(load_model(model).state_dict(), path)
    return str(path)


def _chunk_bytes(store: Path) -> int:
    return sum(p.stat().st_size for name in ("embeddings", "scales") if (store / name).is_dir()
               for p in (store / name).rglob("*")
               if p.is_file() and not p.name.startswith(".") and ".xterrafm" not in p.parts)


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    v, w = np.moveaxis(ref, 1, -1), np.moveaxis(got, 1, -1)
    ok = np.isfinite(v).all(-1)
    v, w = v[ok].astype(np.float64), w[ok].astype(np.float64)
    return (v * w).sum(-1) / np.linalg.norm(v, axis=-1) / np.linalg.norm(w, axis=-1)


def _band_means(cube, emb):
    """Normalised band means of each 16 px patch, on the patch grid of ``emb``."""
    import xarray as xr

    from xterrafm.normalization import normalize

    values = normalize(np.asarray(cube.values, dtype=np.float32), "s2_l2a", spec="terrafm-v1")
    t, c, h, w = values.shape
    ny, nx = emb.sizes["y"], emb.sizes["x"]
    blocks = values[:, :, :ny * 16, :nx * 16].reshape(t, c, ny, 16, nx, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(blocks, axis=(3, 5)).astype(np.float32)
    return xr.DataArray(means, dims=("time", "embedding", "y", "x"),
                        coords={"time": emb["time"], "y": emb["y"], "x": emb["x"],
                                "spatial_ref": emb["spatial_ref"]})


def _knn(samples, train):
    from xterrafm.eval.knn_probe import knn

    pred = knn(samples.x[train], samples.y[train], samples.x[~train], k=20, temperature=0.07)
    return pred, samples.y[~train]


def run(args: argparse.Namespace) -> dict:
    from xterrafm.datasets import make_synthetic_scene
    from xterrafm.eval.inputs import labelled_samples
    from xterrafm.eval.report import read_scene_cube
    from xterrafm.eval.splits import spatial_block_split
    from xterrafm.store import embed_to_zarr, open_embeddings

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dtypes-"))
    work.mkdir(parents=True, exist_ok=True)
    weights = _weights(args.model, work)
    km2 = (args.size * 10 / 1000) ** 2
    sizes = {(lv, dt): [] for lv in LEVELS for dt in DTYPES}
    raw = {}
    seconds = {(lv, dt): [] for lv in LEVELS for dt in DTYPES}
    cos = {(lv, dt): [] for lv in LEVELS for dt in DTYPES[1:]}
    knn_rows = []
    for seed in args.seeds:
        scene = make_synthetic_scene(work / f"scene-{seed}", seed=seed, width=args.size,
                                     height=args.size, n_dates=2, modalities=("s2_l2a",),
                                     overwrite=True)
        cube = read_scene_cube(scene, "s2_l2a")
        for level in LEVELS:
            arrays = {}
            for dtype in DTYPES:
                store = work / f"s{seed}-{level}-{dtype}.zarr"
                t0 = time.perf_counter()
                embed_to_zarr(cube, store, model=args.model, weights=weights, level=level,
                              dtype=dtype, overwrite=True, progress=False)
                seconds[(level, dtype)].append(time.perf_counter() - t0)
                emb = open_embeddings(store)
                arrays[dtype] = emb
                ncells = emb.sizes["time"] * emb.sizes["y"] * emb.sizes["x"]
                sizes[(level, dtype)].append(_chunk_bytes(store) / (km2 * emb.sizes["time"]))
                item = {"float32": 4, "float16": 2, "int8": 1}[dtype]
                per_cell = emb.sizes["embedding"] * item + (4 if dtype == "int8" else 0)
                raw[(level, dtype)] = per_cell * ncells / (km2 * emb.sizes["time"])
            ref = arrays["float32"].values
            for dtype in DTYPES[1:]:
                cos[(level, dtype)].append(_cosines(ref, arrays[dtype].values))
            if level != "patch":
                continue
            samples = {dt: labelled_samples(arrays[dt], scene.landcover_path) for dt in DTYPES}
            base = labelled_samples(_band_means(cube, arrays["float32"]), scene.landcover_path)
            train = spatial_block_split(samples["float32"].rows, samples["float32"].cols, 4)
            preds = {dt: _knn(samples[dt], train) for dt in DTYPES}
            btrain = spatial_block_split(base.rows, base.cols, 4)
            bpred, btrue = _knn(base, btrain)
            row = {"seed": seed, "n_test": int((~train).sum()), "n_train": int(train.sum()),
                   "baseline_band_means": float((bpred == btrue).mean())}
            for dt in DTYPES:
                pred, truth = preds[dt]
                row[dt] = float((pred == truth).mean())
                row[f"agree_{dt}"] = float((pred == preds["float32"][0]).mean())
            knn_rows.append(row)
    return {"machine": _machine(), "model": args.model, "size_px": args.size,
            "seeds": list(args.seeds), "sizes": sizes, "raw": raw, "seconds": seconds,
            "cos": cos, "knn": knn_rows}


def report(res: dict) -> None:
    print(f"machine: {res['machine']}")
    print(f"model {res['model']} (random init), scene {res['size_px']} px square x 2 dates, "
          f"seeds {res['seeds']}")
    print("\nlevel  dtype    bytes/km2 (stored)  ratio  bytes/km2 (raw)  cos_mean    cos_min"
          "     write_s (noisy)")
    for level in LEVELS:
        f32 = float(np.mean(res["sizes"][(level, "float32")]))
        for dtype in DTYPES:
            size = float(np.mean(res["sizes"][(level, dtype)]))
            if dtype == "float32":
                cmean = cmin = "1 (ref)"
            else:
                c = np.concatenate(res["cos"][(level, dtype)])
                cmean, cmin = f"{c.mean():.7f}", f"{c.min():.7f}"
            secs = ", ".join(f"{s:.1f}" for s in res["seconds"][(level, dtype)])
            print(f"{level:<6} {dtype:<8} {size:>18,.0f}  {size / f32:>5.3f}  "
                  f"{res['raw'][(level, dtype)]:>15,.0f}  {cmean:<10}  {cmin:<10}  {secs}")
    rows = res["knn"]
    if not rows:
        return
    print("\nkNN probe on the synthetic land cover (patch level, k=20, T=0.07, checkerboard "
          "split of 4 x 4 patches)")
    print("seed  n_train  n_test  " + "  ".join(f"{d:>8}" for d in DTYPES)
          + "  agree_f16  agree_i8  band-means baseline")
    for r in rows:
        print(f"{r['seed']:>4}  {r['n_train']:>7}  {r['n_test']:>6}  "
              + "  ".join(f"{r[d]:>8.4f}" for d in DTYPES)
              + f"  {r['agree_float16']:>9.4f}  {r['agree_int8']:>8.4f}  "
              f"{r['baseline_band_means']:.4f}")
    n = sum(r["n_test"] for r in rows)
    for d in (*DTYPES, "baseline_band_means"):
        p = sum(r[d] * r["n_test"] for r in rows) / n
        lo, hi = _wilson(p, n)
        print(f"pooled {d:<20} {p:.4f}  Wilson 95 % [{lo:.4f}, {hi:.4f}]  (n={n})")
    for d in DTYPES[1:]:
        diff = [r[d] - r["float32"] for r in rows]
        print(f"{d} - float32 per seed: " + ", ".join(f"{x:+.4f}" for x in diff))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="terrafm-b")
    parser.add_argument("--size", type=int, default=672, help="scene side in px (10 m)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # random-weights warning
    res = run(args)
    report(res)
    if args.json:
        out = {k: v for k, v in res.items() if k not in ("sizes", "seconds", "cos", "raw")}
        out["sizes"] = {f"{k[0]}/{k[1]}": v for k, v in res["sizes"].items()}
        out["raw"] = {f"{k[0]}/{k[1]}": v for k, v in res["raw"].items()}
        out["cos_min"] = {f"{k[0]}/{k[1]}": float(np.concatenate(v).min())
                          for k, v in res["cos"].items()}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
