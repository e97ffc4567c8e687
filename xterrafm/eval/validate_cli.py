"""``python -m xterrafm validate``: reproduce a published TerraFM figure with your install.

Mounted by :mod:`xterrafm.cli` through `add_validate_subparser`. Building the parser imports
neither torch nor h5py (``xterrafm --help`` stays fast); the run is
:func:`xterrafm.eval.validate.run_validation`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from xterrafm.cli_options import (
    HelpFormatter,
    add_logging_options,
    non_negative_int,
    positive_fraction,
    positive_int,
)

__all__ = ["add_validate_subparser", "run_validate_cli"]

log = logging.getLogger("xterrafm.validate")

VALIDATE_DESCRIPTION = """\
Check that this install reproduces a figure the TerraFM paper reports for TerraFM-B: embed a
local copy of a benchmark with the given weights, run the paper's protocol, and print the
score beside the published one, with the normalisation used.

BENCHMARK and DATA, in their public formats:
  m-eurosat   GEO-Bench classification_v1.0/m-eurosat folder: default_partition.json and one
              <name>.hdf5 per sample (labels read from the files without unpickling, or
              from a labels.json beside them). Protocol: kNN, k=20, votes exp(sim/0.07),
              images resized to 224 px; published top-1 accuracy 94.2 (100 %% of the
              training set) and 59.3 (1 %%).
  eurosat-s1  Copernicus-Bench EuroSAT-S1 folder (eurosat_s1.zip unpacked):
              eurosat-{train,val,test}.txt and all_imgs/<Class>/*.tif (VV, VH in dB).
              Published overall accuracy 87.8 under Copernicus-Bench's frozen-encoder
              protocol (a linear classifier): run here as a linear probe, with kNN beside it.

A score is consistent when the published figure lies in its 95 %% interval widened by one
point; otherwise the output lists what to try (normalisation, stem, resize, units, weights).
"""

VALIDATE_EXAMPLES = """\
examples:
  python -m xterrafm validate m-eurosat $GEO_BENCH_DIR/classification_v1.0/m-eurosat \\
      --weights TerraFM-B.safetensors --device cuda
  python -m xterrafm validate eurosat-s1 data/copernicusbench/eurosat_s1 --weights hf
  python -m xterrafm validate m-eurosat m-eurosat/ --weights w.pth --normalization train-stats

exit codes:
  0    every score with a published figure is consistent with it
  1    a score is not consistent (see the hints), or another failure
  2    usage: bad arguments, unusable data folder or weights
  130  interrupted (Ctrl-C); nothing is kept
  143  terminated (SIGTERM); as for 130
"""


def add_validate_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``validate`` subcommand; its ``func`` default is `run_validate_cli`."""
    parser = subparsers.add_parser(
        "validate",
        help="reproduce a published TerraFM-B benchmark figure with your weights",
        description=VALIDATE_DESCRIPTION,
        epilog=VALIDATE_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("benchmark", choices=("m-eurosat", "eurosat-s1"), metavar="BENCHMARK",
                        help="m-eurosat or eurosat-s1")
    parser.add_argument("data", metavar="DATA", help="local copy of the benchmark (folder)")
    mod = parser.add_argument_group("model")
    mod.add_argument("--weights", required=True,
                     help="the published weights: a local .pth/.safetensors, or 'hf'")
    mod.add_argument("--model", default="terrafm-b",
                     help="terrafm-b, terrafm-l, terrafm-tiny, terrafm-tiny-p8")
    mod.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    mod.add_argument("--batch-size", type=positive_int, default=32, help="images per forward")
    inp = parser.add_argument_group("inputs (defaults: the paper's protocol)")
    inp.add_argument("--modality", choices=("s2_l1c", "s2_l2a", "s1"), default=None,
                     help="stem to embed with; default s2_l1c (m-eurosat), s1 (eurosat-s1)")
    inp.add_argument("--normalization", default="terrafm-v1",
                     help="spec name, JSON spec file, or train-stats (statistics of the "
                     "training split)")
    inp.add_argument("--size", type=non_negative_int, default=224, metavar="PX",
                     help="resize images to PX x PX after normalisation; 0: native size")
    inp.add_argument("--scale", type=float, default=1e-4,
                     help="GEO-Bench value x scale + offset = reflectance")
    inp.add_argument("--offset", type=float, default=0.0, help="see --scale")
    inp.add_argument("--s1-units", choices=("db", "linear"), default="db",
                     help="units of the EuroSAT-S1 files")
    inp.add_argument("--partition", default="default",
                     help="GEO-Bench partition file <name>_partition.json")
    pro = parser.add_argument_group("protocol")
    pro.add_argument("--probe", choices=("knn", "linear"), nargs="+", default=None,
                     help="probes to run; default: the published ones (m-eurosat: knn; "
                     "eurosat-s1: linear and knn)")
    pro.add_argument("--train-fraction", type=positive_fraction, nargs="+", default=None,
                     help="training shares; default: the published ones (m-eurosat: 1 0.01)")
    pro.add_argument("--k", type=positive_int, default=20, help="kNN neighbours")
    pro.add_argument("--temperature", type=float, default=0.07, help="kNN vote temperature")
    pro.add_argument("--seed", type=int, default=0, help="subsample and probe seed")
    pro.add_argument("--max-samples", type=positive_int, default=None,
                     help="at most this many samples per split (a quick look; not the "
                     "protocol)")
    add_logging_options(parser, progress=False)
    parser.set_defaults(func=run_validate_cli)
    return parser


def run_validate_cli(args: argparse.Namespace) -> int:
    """Run ``xterrafm validate`` for parsed arguments; prints the report, returns an exit code."""
    from xterrafm.errors import XterrafmError, exit_code
    from xterrafm.eval.validate import ValidationSettings, format_report, run_validation

    settings = ValidationSettings(
        benchmark=args.benchmark, data_dir=Path(args.data), weights=args.weights,
        model=args.model, modality=args.modality, normalization=args.normalization,
        size=args.size, k=args.k, temperature=args.temperature,
        probes=tuple(args.probe) if args.probe else None,
        train_fractions=tuple(args.train_fraction) if args.train_fraction else None,
        seed=args.seed, batch_size=args.batch_size, device=args.device, scale=args.scale,
        offset=args.offset, s1_units=args.s1_units, partition=args.partition,
        max_samples=args.max_samples)
    try:
        report = run_validation(settings)
    except FileNotFoundError as err:
        log.error("%s", err)
        return 2
    except XterrafmError as err:
        log.error("%s", err)
        return exit_code(err)
    except ValueError as err:  # e.g. a malformed normalisation spec
        log.error("%s", err)
        return 2
    print(format_report(report), file=sys.stdout)
    return 0 if report.consistent else 1
