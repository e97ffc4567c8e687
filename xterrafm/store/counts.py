"""The counts every summary of an embedding store reports, in one type.

A store has ``blocks_total`` blocks (Zarr chunks of ``embeddings``, one per dask block) and
``cells_total`` output cells (windows at the tile level, 16 px patches at the patch level, per
date). A run of :func:`xterrafm.embed_to_zarr` *finds* some blocks complete (written by an
earlier run, their chunks intact), *writes* others, and leaves the rest *failed* (not
written: the run failed or was stopped). Blocks marked done whose chunks turned out missing
or torn are *repaired*: counted once as repaired, and as written when this run rewrote them.
Within the finished blocks, a cell is *embedded* or *empty* (NaN: too few valid pixels; NaN
from the model is an error, never counted here). ``written`` is what the run's markers
say it wrote, also when it failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EmbedSummary", "StoreCounts", "Tally"]


@dataclass(frozen=True)
class Tally:
    """Blocks and the cells in them.

    Attributes
    ----------
    blocks : int
    embedded : int
        Cells with an embedding.
    empty : int
        Cells left NaN because too few of their pixels were valid.
    """

    blocks: int = 0
    embedded: int = 0
    empty: int = 0

    @property
    def cells(self) -> int:
        """Cells counted (embedded + empty)."""
        return self.embedded + self.empty

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.blocks + other.blocks, self.embedded + other.embedded,
                     self.empty + other.empty)


@dataclass
class StoreCounts:
    """Blocks and cells of one store: found complete, written by this run, failed.

    Attributes
    ----------
    blocks_total, cells_total : int
        Size of the store.
    found : Tally
        Complete before this run started (resumed; for :func:`~xterrafm.store.store_status`,
        everything complete).
    written : Tally
        Written by this run.
    repaired : int
        Blocks marked done whose chunks were missing or torn when this run started (queued
        again; written again unless the run failed first).
    """

    blocks_total: int = 0
    cells_total: int = 0
    found: Tally = field(default_factory=Tally)
    written: Tally = field(default_factory=Tally)
    repaired: int = 0

    @property
    def done(self) -> Tally:
        """Found plus written."""
        return self.found + self.written

    @property
    def blocks_failed(self) -> int:
        """Blocks neither found complete nor written."""
        return self.blocks_total - self.done.blocks

    @property
    def cells_failed(self) -> int:
        """Cells of the failed blocks."""
        return self.cells_total - self.done.cells

    @property
    def complete(self) -> bool:
        """Every block is done."""
        return self.blocks_total > 0 and self.blocks_failed == 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form with the derived counts."""
        return {"blocks_total": self.blocks_total, "cells_total": self.cells_total,
                "found": asdict(self.found), "written": asdict(self.written),
                "repaired": self.repaired, "blocks_failed": self.blocks_failed,
                "cells_failed": self.cells_failed,
                "complete": self.complete}


@dataclass
class EmbedSummary:
    """What one call of :func:`xterrafm.embed_to_zarr` did to one store.

    Attributes
    ----------
    store : str
        The store written (path or URL).
    level : str
        ``"tile"`` or ``"patch"``: what a cell is (a window or a 16 px patch).
    counts : StoreCounts
    state : str
        ``"new"`` (template written by this call) or ``"resume"``.
    waves : int
        Waves of blocks finished (one per ``wave_size`` blocks, and one for the rest).
    seconds : float
        Wall time of the call.
    crs, group : str, optional
        CRS of the store and its group in a multi-CRS job (batch jobs fill these).
    preview : str, optional
        PNG preview written by a batch job.
    """

    store: str
    level: str
    counts: StoreCounts = field(default_factory=StoreCounts)
    state: str = ""
    waves: int = 0
    seconds: float = 0.0
    crs: str | None = None
    group: str | None = None
    preview: str | None = None

    @property
    def complete(self) -> bool:
        """Every block of the store is written."""
        return self.counts.complete

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        out = {k: v for k, v in asdict(self).items() if k != "counts"}
        out["counts"] = self.counts.to_dict()
        return out
