"""The ``xterrafm`` command line: ``python -m xterrafm embed|eval ...``.

Subcommands register themselves on an :mod:`argparse` sub-parser and set ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code) and, where a rerun picks
up after an interruption, ``on_interrupt`` (what to tell the user on Ctrl-C or SIGTERM).
``embed`` lives here: its model options are generated from
:class:`~xterrafm.embedding.settings.EmbedSettings`, and the parsed options become an
:class:`~xterrafm.batch.job.EmbedJob` before anything runs. Other subcommands are mounted from
the modules that provide ``add_<name>_subparser(subparsers)`` (importing them does not import
torch, so ``xterrafm --help`` stays fast). Errors map to exit codes through
:func:`xterrafm.errors.exit_code`:

====  ==========================================================================
0     done: every window was embedded or skipped as empty
1     failure: an input could not be read, a window failed, or another error
2     usage: bad arguments or an unusable SOURCE (nothing is started or written)
3     the output store was written with different settings (use ``--overwrite``)
4     the Dask cluster could not be created or reached
130   interrupted (Ctrl-C / SIGINT); embed keeps finished blocks and a rerun resumes
143   terminated (SIGTERM); as for 130
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm._version import __version__
from xterrafm.batch.fused_sources import add_fuse_arguments, fuse_selection_from_args
from xterrafm.batch.interrupts import StopRequests, Terminated
from xterrafm.cli_options import (
    HelpFormatter,
    add_logging_options,
    non_negative_int,
    positive_int,
)
from xterrafm.embedding.settings import add_settings_arguments, settings_from_namespace
from xterrafm.errors import (
    EXIT_CLUSTER,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORE_MISMATCH,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EmbedJobError,
    UsageError,
    XterrafmError,
    exit_code,
)

__all__ = [
    "EXIT_CLUSTER",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STORE_MISMATCH",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "build_parser",
    "embed_job_from_args",
    "main",
]

EXIT_CODES_HELP = """\
exit codes:
  0    done: every window was embedded or skipped as empty
  1    failure: an input could not be read, windows failed, or another error
  2    usage: bad arguments or an unusable SOURCE (nothing is started or written)
  3    the output store was written with different settings (use --overwrite)
  4    the Dask cluster could not be created or reached
  130  interrupted (Ctrl-C); embed keeps finished blocks and a rerun resumes
  143  terminated (SIGTERM); as for 130
"""

#: What ``embed`` tells the user when it is interrupted or terminated.
RESUME_NOTE = "finished blocks are kept, run the same command again to resume"

#: Subcommands mounted from other modules: name -> module with ``add_<name>_subparser``.
OPTIONAL_SUBCOMMANDS = {"eval": "xterrafm.eval.cli", "validate": "xterrafm.eval.validate_cli", "export": "xterrafm.export.cli"}

log = logging.getLogger("xterrafm")

EMBED_DESCRIPTION = """\
Embed a Sentinel-1/2 scene with TerraFM into a Zarr store, on a Dask cluster.

SOURCE is one of:
  - a STAC API URL (https://.../v1), with --collection and --bbox/--datetime;
  - a static STAC catalog.json or ItemCollection JSON file (local path or URL);
  - one or more GeoTIFF/COG paths or URLs (one per band or one multi-band file);
  - a Zarr cube written by xterrafm.io (a directory ending in .zarr).
Without SOURCE, a deterministic synthetic Sentinel-2 L2A scene is generated next to the
output (in <out folder>/synthetic-scene-<size>px) and embedded: a smoke test that needs no data.

Results: the store holds a (time, embedding, y, x) array (--dtype float32, float16 or int8
with a per-cell scale) geo-referenced in the input CRS, with the geo-embeddings convention
attrs and a STAC Item (STORE/stac-item.json); Zarr v2 by default, which GDAL reads
(rasterio.open('ZARR:"STORE":/embeddings')). Read it with xterrafm.store.open_embeddings;
export it with 'xterrafm export STORE --format cog|geoparquet --out DIR'. An area spanning several CRSs (UTM zones) is written as one Zarr group per
CRS inside STORE, named EPSG_<code> (see docs/batch.md). A PNG preview of the first three
principal components is written next to the store (<store stem>_preview.png).

Resuming: a rerun into an existing store skips finished blocks when the store was written
with the same settings (model, weights, modality, normalisation, level, tile, stride,
dtype); otherwise it stops with exit code 3. A rerun writes the store's own chunk grid
whatever --chunk says, and rewrites blocks whose chunks are missing or torn (reported as
"damaged blocks found"). --overwrite starts again.
"""

EMBED_EXAMPLES = """\
examples:
  python -m xterrafm embed --level patch --out xterrafm-output/embeddings.zarr
  xterrafm embed https://planetarycomputer.microsoft.com/api/stac/v1 \\
      --collection sentinel-2-l2a --bbox 11.0 46.0 11.2 46.2 --datetime 2024-06 \\
      --modality s2_l2a --out emb.zarr --cluster gateway --adapt 1 20 --gpu 1
  xterrafm embed scene/B*.tif --modality s2_l2a --out emb.zarr --cluster tcp://10.0.0.5:8786
  xterrafm embed s2_items.json --modality s2_l2a --fuse-with s1_items.json --fuse-modality s1 \\
      --weights pretrain-output/teacher.safetensors --out fused.zarr
"""


def _add_embed_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "embed", help="embed a scene or area into a Zarr store (batch job on a Dask cluster)",
        description=EMBED_DESCRIPTION, epilog=EMBED_EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=HelpFormatter)
    parser.add_argument("source", nargs="*", metavar="SOURCE",
                        help="STAC API URL, static catalog/ItemCollection, GeoTIFF path(s) or "
                        "Zarr cube; omitted: a synthetic scene")
    parser.add_argument("--out", "-o", required=True, metavar="STORE",
                        help="output Zarr store (directory)")
    src = parser.add_argument_group("input selection")
    src.add_argument("--collection", help="STAC collection id (required for a STAC API URL)")
    src.add_argument("--bbox", nargs=4, type=float, metavar=("WEST", "SOUTH", "EAST", "NORTH"),
                     help="area of interest in degrees (EPSG:4326)")
    src.add_argument("--datetime", help="STAC datetime or range: 2024, 2024-06, 2024-06-01, "
                     "2024-06-01/2024-06-30 or ISO date-times")
    src.add_argument("--chunk", type=positive_int, default=None, metavar="PX",
                     help="spatial chunk size in pixels when reading (bounds memory per task); "
                     "default: the reader's (1120 px, a multiple of 224)")
    src.add_argument("--synthetic-size", type=positive_int, default=448, metavar="PX",
                     help="width and height of the generated synthetic scene (only without "
                     "SOURCE)")
    add_settings_arguments(parser, {"input selection": src,
                                    "model": parser.add_argument_group("model")})
    add_fuse_arguments(parser)  # --fuse-with SOURCE --fuse-modality s1 (xterrafm.batch.fused_sources)
    out = parser.add_argument_group("output")
    out.add_argument("--overwrite", action="store_true",
                     help="delete an existing store and start again (default: resume into it)")
    out.add_argument("--no-preview", action="store_true", help="do not write the PCA preview PNG")
    out.add_argument("--dtype", choices=("float32", "float16", "int8"), default="float32",
                     help="data type of the stored embeddings; int8 keeps one float32 scale "
                     "per cell and is decoded by xterrafm.store.open_embeddings "
                     "(default: float32)")
    out.add_argument("--verify", choices=("size", "checksum"), default="size",
                     help="how a resume checks the chunks of blocks marked done: their sizes, "
                     "or also their CRC-32 (reads the store once) (default: size)")
    out.add_argument("--zarr-format", type=int, choices=(2, 3), default=2,
                     help="Zarr format of a new store; 2 is readable by GDAL (default: 2)")
    out.add_argument("--wave-size", type=positive_int, default=None, metavar="BLOCKS",
                     help="output blocks submitted per wave (bounds the task graph); default: "
                     "4 x threads, at least 8")
    clu = parser.add_argument_group("cluster")
    clu.add_argument("--cluster", default="local", metavar="threads|local|ADDRESS|gateway",
                     help="threads: this process; local: a LocalCluster sized to this machine; "
                     "ADDRESS: a running scheduler (tcp://host:8786), left running; gateway: a "
                     "new Dask Gateway cluster, shut down at the end")
    clu.add_argument("--n-workers", type=positive_int, default=None,
                     help="LocalCluster worker processes")
    clu.add_argument("--threads-per-worker", type=positive_int, default=None,
                     help="LocalCluster threads per worker")
    clu.add_argument("--memory-limit", default=None,
                     help="LocalCluster memory per worker, e.g. 4GiB")
    gw = parser.add_argument_group(
        "Dask Gateway (with --cluster gateway; sent as the gateway's cluster options)")
    gw.add_argument("--gateway-address", default=None, metavar="URL",
                    help="gateway URL; default: dask config gateway.address "
                    "(DASK_GATEWAY__ADDRESS)")
    scale = gw.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="fixed number of workers")
    scale.add_argument("--adapt", nargs=2, type=non_negative_int, metavar=("MIN", "MAX"),
                       default=None, help="adaptive scaling between MIN and MAX workers")
    gw.add_argument("--worker-cores", type=positive_int, default=None,
                    help="cluster option worker_cores")
    gw.add_argument("--worker-memory", default=None, metavar="SIZE",
                    help="cluster option worker_memory, e.g. 8GiB (a bare number means GiB)")
    gw.add_argument("--gpu", type=non_negative_int, default=None, metavar="N",
                    help="cluster option gpu: GPUs per worker (workers declare resource GPU=N "
                    "and run one model task per GPU)")
    add_logging_options(parser)
    parser.set_defaults(func=_run_embed, on_interrupt=RESUME_NOTE)
    return parser


_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^\s:/]+:\d+/?$")


def embed_job_from_args(args: argparse.Namespace):  # -> EmbedJob
    """The :class:`~xterrafm.batch.job.EmbedJob` of ``xterrafm embed``'s parsed options.

    Every value is checked here, before any cluster starts or any file is written.

    Raises
    ------
    UsageError
        A bad option value or combination, or an unusable SOURCE (the message names it).
    """
    from xterrafm.batch.clusters import CLUSTER_KINDS, GatewayOptions, LocalOptions
    from xterrafm.batch.job import EmbedJob
    from xterrafm.batch.sources import SourceSelection, classify_sources
    from xterrafm.embedding.plan import check_weights_path

    settings = settings_from_namespace(args)
    check_weights_path(settings.weights)
    if args.source:
        classify_sources(args.source)
    fuse = fuse_selection_from_args(args)
    if args.datetime is not None:
        from xterrafm.io.stac_items import parse_datetime_range

        parse_datetime_range(args.datetime)
    if args.cluster not in CLUSTER_KINDS and not _ADDRESS.match(args.cluster):
        raise UsageError(f"--cluster {args.cluster!r} is neither threads, local, gateway nor a "
                         "scheduler address such as tcp://10.0.0.5:8786")
    if args.cluster != "gateway" and any(
            getattr(args, name) is not None
            for name in ("gateway_address", "workers", "adapt", "worker_cores", "worker_memory",
                         "gpu")):
        raise UsageError("gateway options (--gateway-address, --workers, --adapt, --worker-*, "
                         "--gpu) need --cluster gateway")
    for flag, value in (("--memory-limit", args.memory_limit),
                        ("--worker-memory", args.worker_memory)):
        if value is not None and value != "auto":
            _check_size(flag, value)
    if settings.device.startswith("cuda") and args.cluster in ("threads", "local"):
        from xterrafm.embedding.runtime import cuda_available

        if not cuda_available():
            raise UsageError(f"--device {settings.device}: torch sees no CUDA device on this "
                             "machine; use --device auto or cpu")
    return EmbedJob(
        out=Path(args.out),
        inputs=SourceSelection(
            sources=tuple(args.source), collection=args.collection,
            bbox=tuple(args.bbox) if args.bbox else None, datetime=args.datetime,
            modality=settings.modality, chunk=args.chunk, synthetic_size=args.synthetic_size),
        settings=settings, overwrite=args.overwrite, preview=not args.no_preview,
        wave_size=args.wave_size, cluster=args.cluster,
        local=LocalOptions(n_workers=args.n_workers, threads_per_worker=args.threads_per_worker,
                           memory_limit=args.memory_limit),
        gateway=GatewayOptions(address=args.gateway_address, workers=args.workers,
                               adapt=tuple(args.adapt) if args.adapt else None,
                               worker_cores=args.worker_cores, worker_memory=args.worker_memory,
                               gpu=args.gpu),
        progress=not (args.no_progress or args.quiet),
        stop_check=getattr(getattr(args, "stop_requests", None), "check", None),
        dtype=args.dtype, verify=args.verify, zarr_format=args.zarr_format, fuse=fuse)


def _check_size(flag: str, value: str) -> None:
    with import_gate():
        from dask.utils import parse_bytes

    text = value.strip()
    try:
        parse_bytes(text if not text.replace(".", "", 1).isdigit() else f"{text}GiB")
    except (ValueError, TypeError):
        raise UsageError(f"{flag} {value!r} is not a size such as 4GiB or 512MB") from None


def _run_embed(args: argparse.Namespace) -> int:
    try:
        job = embed_job_from_args(args)
        from xterrafm.batch.job import run_embed_job

        summary = run_embed_job(job)
    except XterrafmError as err:
        log.error("%s", err)
        if isinstance(err, EmbedJobError) and err.summary is not None:
            print(err.summary.format(), file=sys.stderr)
        return exit_code(err)
    print(summary.format(), file=sys.stderr if args.quiet else sys.stdout)
    return EXIT_OK if summary.cells_failed == 0 else EXIT_FAILURE


def _mount_optional_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Mount the subcommands of :data:`OPTIONAL_SUBCOMMANDS`."""
    for name, module_name in OPTIONAL_SUBCOMMANDS.items():
        add = getattr(importlib.import_module(module_name), f"add_{name}_subparser")
        add(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``xterrafm`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="xterrafm", description="Xarray/Dask-native TerraFM: Sentinel-1/2 embeddings at "
        "scale.", epilog="run 'xterrafm <command> --help' for a command's options\n\n"
        + EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"xterrafm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    _add_embed_parser(subparsers)
    _mount_optional_subcommands(subparsers)
    return parser


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stderr`` as it is when a record is emitted.

    A handler bound to the stream of the moment outlives it when ``sys.stderr`` is swapped
    (a notebook's or a test's capture, ``contextlib.redirect_stderr``) and then fails on every
    record with "--- Logging error ---"; this one follows the swap.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the stream is always the current sys.stderr
        pass


def configure_logging(verbose: int, quiet: int) -> None:
    """Set the ``xterrafm`` logger's level from ``-v``/``-q`` counts (default INFO)."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    level = min(max(level, logging.DEBUG), logging.CRITICAL)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("xterrafm")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # warnings (e.g. random weights) are logged like the rest, once each
    logging.captureWarnings(True)
    shown = logging.getLogger("py.warnings")
    shown.handlers[:] = [handler]
    shown.propagate = False
    # distributed is chatty (and warns about routine worker shutdowns): errors only unless -v.
    distributed_level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.getLogger("distributed").setLevel(distributed_level)


def _stopped_message(what: str, args: argparse.Namespace) -> str:
    """``"interrupted"``/``"terminated"`` plus the subcommand's ``on_interrupt`` note, if any
    (only subcommands that keep their work, like ``embed``, set one)."""
    note = getattr(args, "on_interrupt", None)
    return f"{what}; {note}" if note else what


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xterrafm`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        The exit code (see the module docstring); never raises ``SystemExit`` itself except
        through argparse for ``--help``/``--version``/usage errors (code 0 or 2).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", 0))
    stops = StopRequests()
    args.stop_requests = stops
    try:
        with stops.installed():
            return int(func(args))
    except KeyboardInterrupt:
        log.error("%s", _stopped_message("interrupted", args))
        return EXIT_INTERRUPTED
    except Terminated:
        log.error("%s", _stopped_message("terminated", args))
        return EXIT_TERMINATED
