"""The working folder of a benchmark run: the one asked for (kept), or a temporary one
(removed when the run ends, also on failure)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def bench_workdir(path: str | None, prefix: str) -> Iterator[Path]:
    """Yield ``path`` (created if missing, left in place) or a new temporary folder named
    ``prefix...`` that is deleted on exit."""
    root = Path(path or tempfile.mkdtemp(prefix=prefix))
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        if path is None:
            shutil.rmtree(root, ignore_errors=True)
