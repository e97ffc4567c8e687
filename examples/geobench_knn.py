"""kNN evaluation of TerraFM embeddings on GEO-Bench, following the TerraFM paper's protocol.

Protocol: frozen CLS embeddings of every image (resized to 224 x 224 px after
normalisation), cosine-similarity kNN with k = 20 and votes weighted by exp(sim / 0.07);
single-label tasks report top-1 accuracy, multi-label tasks (m-bigearthnet) micro-F1 of one
binary kNN per class. ``--train-fraction 0.01`` gives the paper's 1 % training-data setting
(a seeded, stratified subsample of the training split).

Expected layout of a GEO-Bench classification task (as downloaded from GEO-Bench; read by
:mod:`xterrafm.eval.geobench`)::

    <task dir>/                      e.g. classification_v1.0/m-eurosat
        default_partition.json       {"train": [names], "valid": [...], "test": [...]}
        <name>.hdf5                  one file per sample, one dataset per band,
                                     named like "02 - Blue", "08A - Vegetation Red Edge"
        labels.json                  optional: {"<name>": label}

GEO-Bench keeps classification labels inside a pickled attribute of each HDF5 file.
xterrafm reads the label from it without unpickling (no class or function the pickle names is
ever looked up, so nothing in the file can run); a ``labels.json`` (a class index per sample,
or a list of 0/1 for multi-label tasks) takes precedence when present.

Reading the HDF5 bands needs ``h5py`` (``pip install h5py``). Sentinel-2 bands are matched
by their number (B10 is dropped); values are converted with ``--scale``/``--offset`` to
reflectance (default 1e-4 and 0, for digital numbers without the +1000 offset).

Usage::

    python examples/geobench_knn.py --task-dir $GEO_BENCH_DIR/classification_v1.0/m-eurosat \
        --weights TerraFM-B.safetensors --modality s2_l1c
    python examples/geobench_knn.py --model terrafm-tiny          # synthetic scene, no data

Without ``--task-dir`` the same protocol runs on xterrafm's synthetic scene: 32 x 32 px
chips labelled with their majority land-cover class, train/test chips on a spatial
checkerboard, with random-init or the given weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from xterrafm.errors import InputError
from xterrafm.eval import embed_images, geobench, knn, knn_f1, spatial_block_split
from xterrafm.eval.metrics import accuracy
from xterrafm.eval.splits import subsample_training_set
from xterrafm.weights import load_model


def geobench_band_prefix(band: str) -> str:
    """GEO-Bench's dataset-name prefix of a TerraFM Sentinel-2 band: B8A -> "08A", B02 -> "02"."""
    return geobench.band_prefix(band)


def read_geobench_sample(path: Path, modality: str, scale: float, offset: float) -> np.ndarray:
    """Bands of one GEO-Bench HDF5 sample in TerraFM order, physical units, (C, H, W) float32."""
    try:
        return geobench.read_sample(path, modality, scale, offset)
    except InputError as err:
        raise SystemExit(str(err)) from None


def load_geobench_split(task_dir: Path, split: str, partition: str) -> tuple[list[str], list]:
    """Sample names and labels of one split of a GEO-Bench task."""
    try:
        return geobench.load_split(task_dir, split, partition)
    except InputError as err:
        raise SystemExit(str(err)) from None


def geobench_protocol(args, model) -> str:
    task_dir = Path(args.task_dir)
    results = []
    data = {}
    for split in ("train", "test"):
        names, labels = load_geobench_split(task_dir, split, args.partition)
        images = (read_geobench_sample(task_dir / f"{n}.hdf5", args.modality, args.scale,
                                       args.offset) for n in names)
        x = embed_images(images, model, args.modality, size=args.size,
                         batch_size=args.batch_size)
        data[split] = (x, np.asarray(labels))
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    multilabel = ytr.ndim == 2
    for k in args.k:
        if multilabel:
            score = knn_f1(xtr, ytr, xte, yte, k=k, temperature=args.temperature,
                           train_fraction=args.train_fraction, seed=args.seed)
            results.append(f"{task_dir.name}  k={k}  micro-F1 {score:.4f}")
        else:
            pred = knn(xtr, ytr, xte, k=k, temperature=args.temperature,
                       train_fraction=args.train_fraction, seed=args.seed)
            results.append(f"{task_dir.name}  k={k}  top-1 acc {accuracy(yte, pred):.4f}")
    return "\n".join(results)


def synthetic_chips(workdir: Path, size: int, chip: int, modality: str, seed: int):
    """Chips of the synthetic scene (both dates) with majority land-cover labels."""
    from xterrafm.datasets import make_synthetic_scene
    from xterrafm.eval.report import read_scene_cube

    scene = make_synthetic_scene(workdir, seed=seed, width=size, height=size,
                                 modalities=(modality,), overwrite=True)
    cube = read_scene_cube(scene, modality).values  # (T, C, H, W)
    n = size // chip
    images, labels, rows, cols = [], [], [], []
    for t in range(cube.shape[0]):
        for i in range(n):
            for j in range(n):
                win = np.s_[i * chip : (i + 1) * chip, j * chip : (j + 1) * chip]
                img = cube[t][(slice(None), *win)]
                if np.isnan(img).mean() > 0.5:
                    continue
                values, counts = np.unique(scene.landcover[win], return_counts=True)
                images.append(img)
                labels.append(int(values[np.argmax(counts)]))
                rows.append(i)
                cols.append(j)
    return images, np.array(labels), np.array(rows), np.array(cols)


def synthetic_protocol(args, model) -> str:
    with tempfile.TemporaryDirectory(prefix="xterrafm-geobench-") as tmp:
        images, y, rows, cols = synthetic_chips(Path(tmp), args.synthetic_size, args.chip,
                                                args.modality, args.seed)
    x = embed_images(images, model, args.modality, size=args.size, batch_size=args.batch_size)
    train = spatial_block_split(rows, cols, block=2)
    xtr, ytr, xte, yte = x[train], y[train], x[~train], y[~train]
    if args.train_fraction != 1.0:
        keep = subsample_training_set(ytr, args.train_fraction, seed=args.seed)
        xtr, ytr = xtr[keep], ytr[keep]
    lines = [f"synthetic scene {args.synthetic_size} px, {len(ytr)} train / {len(yte)} test "
             f"chips of {args.chip} px, {args.modality}"]
    for k in args.k:
        pred = knn(xtr, ytr, xte, k=k, temperature=args.temperature)
        lines.append(f"k={k}  T={args.temperature:g}  top-1 acc {accuracy(yte, pred):.4f}")
    values, counts = np.unique(ytr, return_counts=True)
    floor = accuracy(yte, np.full(len(yte), values[np.argmax(counts)]))
    lines.append(f"majority-class baseline  top-1 acc {floor:.4f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task-dir", default=None, help="GEO-Bench task folder; none: synthetic")
    p.add_argument("--partition", default="default", help="<name>_partition.json to use")
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--weights", default=None, help="weights file (default: random init)")
    p.add_argument("--modality", default=None,
                   help="s2_l1c / s2_l2a (default: s2_l1c for GEO-Bench, s2_l2a synthetic)")
    p.add_argument("--scale", type=float, default=1e-4, help="GEO-Bench value -> reflectance")
    p.add_argument("--offset", type=float, default=0.0)
    p.add_argument("--size", type=int, default=None,
                   help="resize images to this many px (default: 224 for GEO-Bench, none "
                   "for synthetic chips)")
    p.add_argument("--k", type=int, nargs="+", default=[20])
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--train-fraction", type=float, default=1.0, help="0.01: the 1%% protocol")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-size", type=int, default=448, help="synthetic scene size (px)")
    p.add_argument("--chip", type=int, default=32, help="synthetic chip size (px)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.modality is None:
        args.modality = "s2_l1c" if args.task_dir else "s2_l2a"
    if args.size is None and args.task_dir:
        args.size = 224
    model = load_model(args.model, weights=args.weights)
    if args.weights is None:
        print("note: random-init weights; pass --weights for meaningful scores", file=sys.stderr)
    report = geobench_protocol(args, model) if args.task_dir else synthetic_protocol(args, model)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
