"""``python -m xterrafm eval``: land-cover kNN and linear probes of embeddings, as a table.

Mounted by :mod:`xterrafm.cli` through `add_eval_subparser`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from xterrafm.cli_options import (
    HelpFormatter,
    add_logging_options,
    positive_fraction,
    positive_int,
)

__all__ = ["add_eval_subparser", "run_eval_cli"]

log = logging.getLogger("xterrafm.eval")

EVAL_DESCRIPTION = """\
Score embeddings on land-cover labels with kNN (the TerraFM paper's protocol: cosine
similarity, votes weighted by exp(sim / T)) and a linear probe, and print a table.

Inputs, one of:
  - nothing: a deterministic synthetic scene is generated (in --workdir or a temporary
    folder), embedded with --model/--weights, and scored against its land-cover map;
  - --embeddings STORE --labels RASTER: an embedding Zarr store written by
    'xterrafm embed' and a single-band label raster (GeoTIFF) on any grid and CRS.
Labels are resampled to the embedding grid by majority over each embedding pixel's
footprint (the window for level=tile, the 16 px patch for level=patch). Train and test sets
are the two colours of a checkerboard of --block x --block embedding cells, so neighbouring
samples do not leak across the split.
"""

EVAL_EXAMPLES = """\
examples:
  python -m xterrafm eval --model terrafm-tiny
  python -m xterrafm eval --weights TerraFM-B.safetensors --k 20 --train-fraction 0.01
  python -m xterrafm eval --embeddings emb.zarr --labels worldcover.tif --block 2

exit codes:
  0    the table was printed
  1    failure
  2    usage: bad arguments or unusable inputs
  130  interrupted (Ctrl-C); nothing is kept, a rerun starts again
  143  terminated (SIGTERM); as for 130
"""


def add_eval_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an argparse sub-parser collection.

    The parser's ``func`` default is `run_eval_cli` (returns an exit code).
    """
    parser = subparsers.add_parser(
        "eval",
        help="score embeddings on land cover with kNN and a linear probe",
        description=EVAL_DESCRIPTION,
        epilog=EVAL_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    src = parser.add_argument_group("inputs")
    src.add_argument("--embeddings", metavar="STORE", help="embedding Zarr store")
    src.add_argument("--labels", metavar="RASTER", help="label raster (with --embeddings)")
    src.add_argument("--nodata", type=int, default=None,
                     help="label value meaning unlabelled (default: the raster's nodata)")
    src.add_argument("--max-classes", type=positive_int, default=100, metavar="N",
                     help="refuse label rasters with more distinct values (a continuous "
                     "raster is not a class map)")
    syn = parser.add_argument_group("synthetic scene (without --embeddings)")
    syn.add_argument("--workdir", default=None,
                     help="folder for the synthetic scene (default: a temporary folder)")
    syn.add_argument("--synthetic-size", type=positive_int, default=448, metavar="PX",
                     help="width and height of the synthetic scene in pixels (10 m)")
    syn.add_argument("--modality", default="s2_l2a", choices=("s2_l2a", "s2_l1c", "s1"),
                     help="which of the scene's sensors to embed")
    syn.add_argument("--model", default="terrafm-b",
                     help="terrafm-b, terrafm-l, terrafm-tiny or terrafm-tiny-p8")
    syn.add_argument("--weights", default=None,
                     help="weights file; default random init (scores then mean little)")
    syn.add_argument("--level", choices=("patch", "tile"), default="patch",
                     help="patch: one sample per 16 px patch; tile: one per window")
    syn.add_argument("--tile", type=positive_int, default=224, metavar="PX",
                     help="window size in pixels")
    syn.add_argument("--seed", type=int, default=0, help="scene, subsample and probe seed")
    pro = parser.add_argument_group("protocol")
    pro.add_argument("--k", type=positive_int, nargs="+", default=[1, 5, 20],
                     help="kNN neighbour counts")
    pro.add_argument("--temperature", type=float, default=0.07, help="kNN vote temperature")
    pro.add_argument("--block", type=positive_int, default=4,
                     help="checkerboard cell side of the spatial split, in embedding cells")
    pro.add_argument("--train-fraction", type=positive_fraction, default=1.0,
                     help="stratified share of the training set (0.01: the 1%% protocol)")
    pro.add_argument("--no-linear", action="store_true", help="skip the linear probe")
    pro.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                     help="balanced: fit the probes as if every class were equally frequent "
                     "and report macro-accuracy (mean per-class recall), for long-tailed labels")
    add_logging_options(parser, progress=False)
    # no on_interrupt note: an interrupted evaluation keeps nothing to resume from
    parser.set_defaults(func=run_eval_cli)
    return parser


def run_eval_cli(args: argparse.Namespace) -> int:
    """Run ``xterrafm eval`` for parsed arguments; prints the table, returns an exit code.

    Returns
    -------
    int
        0 on success, 2 for unusable arguments or inputs, 1 for other failures.
    """
    from xterrafm.eval.inputs import labelled_samples, open_embedding_cube
    from xterrafm.eval.report import evaluate_samples, format_table, synthetic_scene_samples

    if (args.embeddings is None) != (args.labels is None):
        log.error("--embeddings and --labels go together")
        return 2
    try:
        if args.embeddings is not None:
            for p in (args.embeddings, args.labels):
                if not Path(p).exists():
                    raise FileNotFoundError(f"{p} does not exist")
            samples = labelled_samples(open_embedding_cube(args.embeddings), args.labels,
                                       nodata=args.nodata, max_classes=args.max_classes)
            title = f"embeddings {args.embeddings} vs labels {args.labels}"
        else:
            if args.weights is None:
                log.warning("no --weights: the model is randomly initialised, so the scores "
                            "only show that the pipeline runs")
            with tempfile.TemporaryDirectory(prefix="xterrafm-eval-") as tmp:
                workdir = Path(args.workdir) if args.workdir else Path(tmp)
                samples = synthetic_scene_samples(
                    workdir, size=args.synthetic_size, modality=args.modality,
                    model=args.model, weights=args.weights, level=args.level, tile=args.tile,
                    seed=args.seed,
                )
            title = (f"synthetic scene {args.synthetic_size} px, {args.modality}, "
                     f"{args.model} ({args.weights or 'random init'}), level={args.level}")
        if len(samples) == 0:
            raise ValueError("no embedding pixel has both a valid embedding and a label")
        rows = evaluate_samples(
            samples, ks=args.k, temperature=args.temperature, block=args.block,
            train_fraction=args.train_fraction, linear=not args.no_linear, seed=args.seed,
            class_weight=None if args.class_weight == "none" else args.class_weight,
        )
    except (ValueError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    print(format_table(rows, title=f"land-cover probes: {title}"), file=sys.stdout)
    return 0
