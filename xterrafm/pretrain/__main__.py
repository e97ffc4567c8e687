"""``python -m xterrafm.pretrain``: command-line entry point of pretraining."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xterrafm.cli_options import positive_int

__all__ = ["main", "parse_args"]

_EPILOG = (
    "Any config key can be overridden with --key=value (e.g. --batch_size=16 "
    "--center_lambda=1.0). Without --data, a synthetic scene is generated into the output "
    "folder and trained on."
)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict[str, str]]:
    """Parse the known options and collect ``--key=value`` config overrides."""
    parser = argparse.ArgumentParser(
        prog="python -m xterrafm.pretrain",
        description="Self-supervised TerraFM pretraining (DINO + dual centering).",
        epilog=_EPILOG,
    )
    parser.add_argument("--config", default="tiny",
                        help="shipped config name (tiny, vitb) or path to a TOML file")
    parser.add_argument("--data", nargs="+", default=None, metavar="PATH",
                        help="Zarr training cube(s); default: a generated synthetic scene")
    parser.add_argument("--output", default="pretrain-output", help="output folder")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="stop after this step")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT/checkpoint.pt")
    args, rest = parser.parse_known_args(argv)
    overrides: dict[str, str] = {}
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            parser.error(f"unrecognised argument {item!r}; config overrides look like --key=value")
        key, value = item[2:].split("=", 1)
        overrides[key] = value
    return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Run pretraining; returns the process exit status."""
    args, overrides = parse_args(argv)
    from xterrafm.pretrain.config import load_config
    from xterrafm.pretrain.trainer import train

    try:
        config = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = train(config, args.data, args.output, max_steps=args.max_steps, resume=args.resume)
    if result.export_path is not None:
        last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
        print(f"done: step {result.step}, last loss {last}; teacher backbone exported to "
              f"{result.export_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
