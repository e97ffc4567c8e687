"""Agreement of bf16 with fp32 embeddings: cosine per window and the kNN probe's accuracy.

Embeds a synthetic Sentinel-2 L2A scene (land cover known) at ``--tile`` px windows twice,
``precision="fp32"`` and ``precision="bf16"`` (forced: on a CPU without native bf16 it is
emulated, slower, but computes the same numbers), and prints

- the cosine similarity of each window's bf16 embedding to its fp32 one (min, median);
- the accuracy of the weighted cosine kNN probe (``xterrafm.eval.knn_probe``, its default
  k=20, temperature 0.07: nothing tuned) predicting each window's majority land-cover class,
  trained on the windows of the left half of the scene and scored on the right half, for fp32,
  bf16 and, as the simple baseline, the windows' mean normalised band values; the share of
  test windows where bf16 and fp32 predict the same class; a bootstrap 95 % interval of the
  accuracy difference bf16 - fp32 over test windows (paired, 2000 resamples, seed 0).

Usage::

    python benchmarks/bench_bf16_agreement.py [--model terrafm-b] [--side 1024] [--tile 64]

Weights are the seeded random initialisation (``--seed``): the accuracy itself says little
about the published model, the agreement of bf16 with fp32 is what is measured.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_embed import _weights
from machine_info import describe_machine
from workdir import bench_workdir


def _majority(landcover: np.ndarray, tile: int, ny: int, nx: int) -> np.ndarray:
    out = np.empty((ny, nx), dtype=landcover.dtype)
    for i in range(ny):
        for j in range(nx):
            vals, counts = np.unique(landcover[i * tile:(i + 1) * tile,
                                               j * tile:(j + 1) * tile], return_counts=True)
            out[i, j] = vals[np.argmax(counts)]
    return out


def _bootstrap(a_ok: np.ndarray, b_ok: np.ndarray, n: int = 2000, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a_ok.size, size=(n, a_ok.size))
    diff = b_ok[idx].mean(1) - a_ok[idx].mean(1)
    return [round(float(np.percentile(diff, 2.5)), 4), round(float(np.percentile(diff, 97.5)), 4)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)

    import torch

    import xterrafm
    from xterrafm.datasets import make_synthetic_scene
    from xterrafm.eval.knn_probe import knn
    from xterrafm.io import load_stac

    with bench_workdir(a.workdir, "bench_bf16-") as root:
        scene = make_synthetic_scene(root / "scene", seed=a.seed, width=a.side, height=a.side,
                                     n_dates=1, modalities=("s2_l2a",), nodata_date=None,
                                     cloud_fraction=0.0, overwrite=True)
        weights = _weights(a.model, root)
        cube = load_stac(scene.item_collections["s2_l2a"], modality="s2_l2a").load()
        emb, seconds = {}, {}
        for prec in ("fp32", "bf16"):
            t0 = time.perf_counter()
            out = xterrafm.embed(cube, model=a.model, weights=weights, tile=a.tile,
                                 precision=prec)
            emb[prec] = out.compute(scheduler="threads").values[0]  # (D, ny, nx)
            seconds[prec] = round(time.perf_counter() - t0, 2)
            assert out.attrs["precision"] == prec
        d, ny, nx = emb["fp32"].shape
        flat = {k: v.reshape(d, -1).T for k, v in emb.items()}
        cos = (flat["fp32"] * flat["bf16"]).sum(1) / (
            np.linalg.norm(flat["fp32"], axis=1) * np.linalg.norm(flat["bf16"], axis=1))
        labels = _majority(np.asarray(scene.landcover), a.tile, ny, nx)
        norm = xterrafm.normalize(cube.values[0, :, :ny * a.tile, :nx * a.tile], "s2_l2a")
        means = norm.reshape(norm.shape[0], ny, a.tile, nx, a.tile).mean(axis=(2, 4))
        flat["band_means"] = means.reshape(norm.shape[0], -1).T
        train = np.zeros((ny, nx), dtype=bool)
        train[:, : nx // 2] = True
        train, y = train.ravel(), labels.ravel()
        pred = {k: knn(v[train], y[train], v[~train]) for k, v in flat.items()}
        ok = {k: (v == y[~train]).astype(float) for k, v in pred.items()}
        result = {
            "machine": describe_machine(torch=torch.__version__), "model": a.model,
            "side": a.side, "tile": a.tile, "windows": int(ny * nx),
            "test_windows": int((~train).sum()), "classes_in_test": int(np.unique(y[~train]).size),
            "seconds": seconds,
            "cosine_bf16_vs_fp32": {"min": round(float(cos.min()), 6),
                                    "median": round(float(np.median(cos)), 6)},
            "knn_accuracy": {k: round(float(v.mean()), 4) for k, v in ok.items()},
            "same_prediction_bf16_fp32": round(float((pred["bf16"] == pred["fp32"]).mean()), 4),
            "accuracy_diff_bf16_minus_fp32_ci95": _bootstrap(ok["fp32"], ok["bf16"]),
        }
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
