"""Training metrics: a JSON-lines log and a progress bar on stdout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate

__all__ = ["MetricsLog"]


class MetricsLog:
    """Append-only JSONL metrics log with an optional tqdm progress bar.

    Parameters
    ----------
    path : path-like or None
        JSONL file (one object per logged step); ``None`` to log nowhere (non-zero ranks).
    total : int
        Steps of the run (for the bar).
    initial : int
        Step the run starts at (after a resume).
    progress : bool
        Show a tqdm bar on stdout.
    """

    def __init__(self, path: str | os.PathLike | None, total: int, initial: int = 0,
                 progress: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self._fh = open(self.path, "a", encoding="utf-8") if self.path is not None else None
        self._bar = None
        if progress and self.path is not None:
            with import_gate():
                from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, file=sys.stdout, unit="step",
                             dynamic_ncols=True, mininterval=1.0)

    def log(self, record: dict[str, Any], show: bool = True) -> None:
        """Append ``record`` to the log; update the bar's postfix when ``show``."""
        if self._fh is not None:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        if self._bar is not None and show:
            self._bar.set_postfix(
                loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                t_temp=f"{record['teacher_temp']:.3f}",
                sps=f"{record['samples_per_s']:.1f}",
                wait=f"{100 * record['data_wait_fraction']:.0f}%",
                refresh=False,
            )

    def advance(self, n: int = 1) -> None:
        """Move the bar by ``n`` steps."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Close the file and the bar."""
        if self._bar is not None:
            self._bar.close()
        if self._fh is not None:
            self._fh.close()
