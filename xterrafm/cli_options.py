"""Argument types, help formatting and option groups shared by the ``xterrafm`` subcommands.

Kept apart from :mod:`xterrafm.cli` so that subcommands defined in other packages
(:mod:`xterrafm.eval.cli`) use the same parsing without importing the command line itself.
Imports nothing heavy: building the parser for ``xterrafm --help`` must stay fast.
"""

from __future__ import annotations

import argparse

__all__ = [
    "HelpFormatter",
    "add_logging_options",
    "fraction",
    "non_negative_int",
    "positive_fraction",
    "positive_int",
]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _parse_fraction(text: str, *, zero_allowed: bool) -> float:
    value = float(text)
    if not (0.0 <= value if zero_allowed else 0.0 < value) or value > 1.0:
        interval = "between 0 and 1" if zero_allowed else "in (0, 1]"
        raise argparse.ArgumentTypeError(f"must be {interval}, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return _parse_fraction(text, zero_allowed=True)


def positive_fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    return _parse_fraction(text, zero_allowed=False)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the description's and epilog's layout; show a default when it says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        silent = (None, False, argparse.SUPPRESS, 0, [])
        if "default" in text or action.default in silent or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def add_logging_options(parser: argparse.ArgumentParser, *, progress: bool = True) -> None:
    """Add the ``logging`` group: ``-v``/``--verbose``, ``-q``/``--quiet`` (counts) and, when
    ``progress``, ``--no-progress``."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="less logging" + (", no progress bar" if progress else ""),
    )
    if progress:
        group.add_argument("--no-progress", action="store_true", help="no progress bar")
