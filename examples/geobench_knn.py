"""kNN evaluation of TerraFM embeddings on GEO-Bench, following the TerraFM paper's protocol.

Protocol: frozen CLS embeddings of every image (resized to 224 x 224 px after
normalisation), cosine-similarity kNN with k = 20 and votes weighted by exp(sim / 0.07);
single-label tasks report top-1 accuracy, multi-label tasks (m-bigearthnet) micro-F1 of one
binary kNN per class.

The paper's four tasks are known (xterrafm.eval.geobench.TASKS), and for each the example
picks what the task needs unless told otherwise:

    task           stem     values        bands the task lacks (filled)
    m-eurosat      s2_l1c   DN / 10000    none (channels read in their true order)
    m-bigearthnet  s2_l2a   DN / 10000    none                 (micro-F1)
    m-so2sat       s2_l1c   reflectance   B01, B09
    m-brick-kiln   s2_l1c   DN / 10000    B06, B09 (channels read in their true order)

Missing bands (--missing-bands): "interpolate" (default) fills a band linearly in wavelength
from the nearest present bands on either side (B01 <- B02, B06 <- B05/B07, B09 <- B8A/B11);
"mean" fills it with the normalisation mean (0 after normalisation); "error" refuses.

Training fraction: --train-fraction 0.01 (the paper's 1 % setting) reads GEO-Bench's own
partition file 0.01x_train_partition.json (likewise 0.02, 0.05, 0.10, 0.20, 0.50); a task
folder without that file is refused, unless --subsample asks for a seeded, stratified
subsample of the default partition instead.

Expected layout of a GEO-Bench classification task (as downloaded from GEO-Bench; read by
:mod:`xterrafm.eval.geobench`)::

    <task dir>/                      e.g. classification_v1.0/m-eurosat
        default_partition.json       {"train": [names], "valid": [...], "test": [...]}
        0.01x_train_partition.json   the 1 % partition (and the other fractions)
        <name>.hdf5                  one file per sample, one dataset per band,
                                     named like "02 - Blue", "08A - Vegetation Red Edge"
        labels.json                  optional: {"<name>": label}

GEO-Bench keeps classification labels inside a pickled attribute of each HDF5 file.
xterrafm reads the label from it without unpickling (no class or function the pickle names is
ever looked up, so nothing in the file can run); a ``labels.json`` (a class index per sample,
or a list of 0/1 for multi-label tasks) takes precedence when present.

Reading the HDF5 bands needs ``h5py`` (``pip install h5py``). Other task folders need
--modality (and --scale/--offset when the values are not DN / 10000).

Usage::

    python examples/geobench_knn.py --task-dir $GEO_BENCH_DIR/classification_v1.0/m-eurosat \
        --weights TerraFM-B.safetensors --train-fraction 0.01
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


def read_geobench_sample(path: Path, modality: str, scale: float, offset: float,
                         channels=None, missing: str = "error") -> np.ndarray:
    """Bands of one GEO-Bench HDF5 sample in TerraFM order, physical units, (C, H, W) float32."""
    try:
        return geobench.read_sample(path, modality, scale, offset, channels=channels,
                                    missing=missing)
    except InputError as err:
        raise SystemExit(str(err)) from None


def resolve_task(args) -> tuple[str, list[str]]:
    """Fill in modality, scale, channels and partition from the task table; returns the
    partition name and notes to print."""
    task = geobench.task_for(args.task_dir)
    notes = []
    if task is None:
        if args.modality is None:
            raise SystemExit(f"{Path(args.task_dir).name!r} is not one of the paper's GEO-Bench "
                             f"tasks ({', '.join(geobench.TASKS)}): pass --modality (s2_l1c or "
                             "s2_l2a) and --scale/--offset for its values")
        args.channels = None
    else:
        args.modality = args.modality or task.modality
        args.scale = task.scale if args.scale is None else args.scale
        args.channels = task.channels
        notes.append(f"{task.name}: stem {args.modality}, values x {args.scale:g}"
                     + (f", missing bands {list(task.missing)} filled by "
                        f"'{args.missing_bands}'" if task.missing else ""))
    if args.scale is None:
        args.scale = 1e-4
    if args.subsample or args.train_fraction == 1.0:
        return args.partition, notes
    name = geobench.partition_name(args.train_fraction)
    if not (Path(args.task_dir) / f"{name}_partition.json").is_file():
        raise SystemExit(f"{Path(args.task_dir) / (name + '_partition.json')} not found: "
                         f"--train-fraction {args.train_fraction:g} reads GEO-Bench's own "
                         "partition; pass --subsample for a seeded stratified subsample of "
                         "the default partition instead")
    notes.append(f"training split of GEO-Bench's partition {name}")
    return name, notes


def load_geobench_split(task_dir: Path, split: str, partition: str) -> tuple[list[str], list]:
    """Sample names and labels of one split of a GEO-Bench task."""
    try:
        return geobench.load_split(task_dir, split, partition)
    except InputError as err:
        raise SystemExit(str(err)) from None


def _check_units(image: np.ndarray, modality: str, path: Path, scale: float) -> None:
    """Refuse a first image whose values are not reflectance (a wrong --scale)."""
    from xterrafm.embedding.calibration import check_value_range

    try:
        check_value_range(image.reshape(image.shape[0], -1).astype("float64"), modality,
                          applied=f"{path.name} x {scale:g}")
    except InputError as err:
        raise SystemExit(f"{err}\n(for GEO-Bench: set --scale/--offset so that values become "
                         "reflectance)") from None


def geobench_protocol(args, model, partition: str, notes: list[str]) -> str:
    task_dir = Path(args.task_dir)
    results = list(notes)
    data = {}
    for split in ("train", "test"):
        names, labels = load_geobench_split(task_dir, split, partition)
        first = read_geobench_sample(task_dir / f"{names[0]}.hdf5", args.modality, args.scale,
                                     args.offset, args.channels, args.missing_bands)
        _check_units(first, args.modality, task_dir / f"{names[0]}.hdf5", args.scale)
        images = (read_geobench_sample(task_dir / f"{n}.hdf5", args.modality, args.scale,
                                       args.offset, args.channels, args.missing_bands)
                  for n in names)
        x = embed_images(images, model, args.modality, size=args.size,
                         batch_size=args.batch_size)
        data[split] = (x, np.asarray(labels))
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    multilabel = ytr.ndim == 2
    own = args.train_fraction if args.subsample else 1.0
    results.append(f"{len(ytr)} train / {len(yte)} test samples (partition {partition}"
                   + (f", subsampled to {own:g}" if own != 1.0 else "") + ")")
    for k in args.k:
        if multilabel:
            score = knn_f1(xtr, ytr, xte, yte, k=k, temperature=args.temperature,
                           train_fraction=own, seed=args.seed)
            results.append(f"{task_dir.name}  k={k}  micro-F1 {score:.4f}")
        else:
            pred = knn(xtr, ytr, xte, k=k, temperature=args.temperature,
                       train_fraction=own, seed=args.seed)
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
    p.add_argument("--partition", default="default",
                   help="<name>_partition.json to use at --train-fraction 1")
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--weights", default=None, help="weights file (default: random init)")
    p.add_argument("--modality", default=None,
                   help="s2_l1c / s2_l2a (default: the task's stem, see above; s2_l2a for "
                   "the synthetic scene)")
    p.add_argument("--scale", type=float, default=None,
                   help="GEO-Bench value -> reflectance (default: the task's, else 1e-4)")
    p.add_argument("--offset", type=float, default=0.0)
    p.add_argument("--missing-bands", choices=geobench.MISSING_POLICIES, default="interpolate",
                   help="how bands a task lacks are filled")
    p.add_argument("--subsample", action="store_true",
                   help="--train-fraction subsamples the default partition (seeded, stratified) "
                   "instead of reading GEO-Bench's partition file")
    p.add_argument("--size", type=int, default=None,
                   help="resize images to this many px (default: 224 for GEO-Bench, none "
                   "for synthetic chips)")
    p.add_argument("--k", type=int, nargs="+", default=[20])
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="0.01: the 1%% protocol (GEO-Bench's 0.01x_train partition)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-size", type=int, default=448, help="synthetic scene size (px)")
    p.add_argument("--chip", type=int, default=32, help="synthetic chip size (px)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.task_dir is None:
        args.modality = args.modality or "s2_l2a"
        args.scale = 1e-4 if args.scale is None else args.scale
    if not 0.0 < args.train_fraction <= 1.0:
        raise SystemExit(f"--train-fraction must be in (0, 1]; got {args.train_fraction}")
    if args.size is None and args.task_dir:
        args.size = 224
    if args.task_dir:
        partition, notes = resolve_task(args)  # refuse bad arguments before loading anything
    model = load_model(args.model, weights=args.weights)
    if args.weights is None:
        print("note: random-init weights; pass --weights for meaningful scores", file=sys.stderr)
    report = geobench_protocol(args, model, partition, notes) if args.task_dir else \
        synthetic_protocol(args, model)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
