"""What a batch embedding job did, over all its stores: :class:`JobSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xterrafm.store.counts import EmbedSummary, Tally

__all__ = ["JobSummary"]


@dataclass
class JobSummary:
    """What the job did, over all stores (one per CRS).

    Attributes
    ----------
    out : str
        The output store given to the job.
    level : str
        ``"tile"`` or ``"patch"``: what a cell is (a window or a 16 px patch, per date).
    stores : list of EmbedSummary
        One per CRS, with ``crs``, ``group`` and ``preview`` filled.
    wall_s : float
        Wall time: cluster, embedding and writing (not the synthetic scene's generation).
    cluster : str
        Description of the cluster the job ran on.
    peak_worker_rss_mib : float, optional
        Largest peak resident memory of the worker processes.
    """

    out: str
    level: str
    stores: list[EmbedSummary] = field(default_factory=list)
    wall_s: float = 0.0
    cluster: str = ""
    peak_worker_rss_mib: float | None = None

    @property
    def written(self) -> Tally:
        """Blocks and cells this run wrote, over all stores."""
        return sum((s.counts.written for s in self.stores), Tally())

    @property
    def found(self) -> Tally:
        """Blocks and cells found complete when this run started (resumed)."""
        return sum((s.counts.found for s in self.stores), Tally())

    @property
    def repaired(self) -> int:
        """Blocks found marked done with missing or torn chunks (queued again), all stores."""
        return sum(s.counts.repaired for s in self.stores)

    @property
    def cells_failed(self) -> int:
        """Cells neither found complete nor written by this run."""
        return sum(s.counts.cells_failed for s in self.stores)

    @property
    def cells_per_s(self) -> float:
        """Cells this run wrote per second of wall time."""
        return self.written.cells / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "out": self.out, "level": self.level, "cluster": self.cluster,
            "embedded": self.written.embedded, "skipped_empty": self.written.empty,
            "already_done": self.found.cells, "repaired_blocks": self.repaired,
            "failed": self.cells_failed,
            "wall_s": round(self.wall_s, 3), "cells_per_s": round(self.cells_per_s, 3),
            "peak_worker_rss_mib": self.peak_worker_rss_mib,
            "stores": [s.to_dict() for s in self.stores],
        }

    def format(self) -> str:
        """Human-readable multi-line summary."""
        unit = "windows" if self.level == "tile" else "patches"
        rows = [
            (f"{unit} embedded", f"{self.written.embedded}"),
            ("skipped as empty", f"{self.written.empty}"),
            ("already done (resumed)", f"{self.found.cells}"),
            ("damaged blocks found", f"{self.repaired}"),
            ("failed / not done", f"{self.cells_failed}"),
            ("wall time", f"{self.wall_s:.1f} s"),
            (f"{unit}/s", f"{self.cells_per_s:.2f}"),
        ]
        if self.peak_worker_rss_mib is not None:
            rows.append(("peak worker memory", f"{self.peak_worker_rss_mib:.0f} MiB"))
        lines = [f"xterrafm embed summary ({self.out}, on {self.cluster or 'n/a'})"]
        lines += [f"  {label + ':':<24}{value}" for label, value in rows]
        for s in self.stores:
            where = s.store if s.group is None else f"{s.store} (group {s.group})"
            c = s.counts
            lines.append(
                f"  store {where}: {s.crs}, {c.cells_total} {unit}, {c.written.blocks} blocks "
                f"written, {c.found.blocks} resumed, {c.repaired} found damaged, {s.waves} waves"
                + (f", preview {s.preview}" if s.preview else ""))
        return "\n".join(lines)
