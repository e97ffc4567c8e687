"""``python -m xterrafm export STORE --format cog|geoparquet --out DIR``.

Mounted by :mod:`xterrafm.cli` through :func:`add_export_subparser`. Building the parser
imports nothing heavy (``xterrafm --help`` stays fast); the run is
:func:`xterrafm.export.run.export_store`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from xterrafm.cli_options import HelpFormatter, add_logging_options

__all__ = ["add_export_subparser", "run_export_cli"]

log = logging.getLogger("xterrafm.export")

EXPORT_DESCRIPTION = """\
Export an embedding store (written by 'xterrafm embed' or xterrafm.embed_to_zarr) to the
formats other embedding products are published in, with a static STAC catalog of the files
(DIR/catalog.json, one Item per file, asset 'embeddings').

  cog         one Cloud-Optimised GeoTIFF per CRS and date: STEM_<YYYYMMDDTHHMMSS>.tif in
              the store's CRS and grid, one float32 band per embedding dimension named
              embedding_000..., nodata NaN (empty cells)
  geoparquet  one GeoParquet file STEM.parquet: a row per cell with an embedding and date,
              columns geometry (the window or patch footprint, lon/lat), time, crs, x, y,
              row, col and embedding (fixed-size list of float32)

int8 and float16 stores are decoded to float32. A multi-CRS store exports every CRS group
(--group: only one).
"""

EXPORT_EXAMPLES = """\
examples:
  python -m xterrafm export emb.zarr --format cog --out emb-cog
  python -m xterrafm export emb.zarr --format geoparquet --out emb-parquet

exit codes:
  0    exported
  1    failure (unreadable store, write error)
  2    usage: bad arguments, files exist (use --overwrite), no such CRS group
  3    STORE is not an xterrafm embedding store
"""


def add_export_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand; its ``func`` default is :func:`run_export_cli`."""
    parser = subparsers.add_parser(
        "export", help="export an embedding store as COGs or GeoParquet (with a STAC catalog)",
        description=EXPORT_DESCRIPTION, epilog=EXPORT_EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("store", metavar="STORE", help="embedding store (Zarr)")
    parser.add_argument("--format", required=True, choices=("cog", "geoparquet"),
                        help="cog (one GeoTIFF per CRS and date) or geoparquet (one file)")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--group", default=None, metavar="EPSG_CODE",
                        help="only this CRS group of a multi-CRS store")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    add_logging_options(parser, progress=False)
    parser.set_defaults(func=run_export_cli)
    return parser


def run_export_cli(args: argparse.Namespace) -> int:
    """Run ``xterrafm export`` for parsed arguments; prints the files written."""
    from xterrafm.errors import XterrafmError, exit_code
    from xterrafm.export.run import export_store

    try:
        result = export_store(args.store, args.format, args.out, group=args.group,
                              overwrite=args.overwrite)
    except XterrafmError as err:
        log.error("%s", err)
        return exit_code(err)
    out = sys.stderr if args.quiet else sys.stdout
    for path in result.files:
        print(path, file=out)
    print(f"catalog: {result.catalog}", file=out)
    return 0
