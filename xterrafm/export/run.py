"""One entry point for every export format: :func:`export_store`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from xterrafm.errors import UsageError

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_store"]

#: Export formats by name.
EXPORT_FORMATS = ("cog", "geoparquet")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes
    ----------
    format : str
        ``"cog"`` or ``"geoparquet"``.
    files : list of Path
        The data files.
    catalog : Path
        The static STAC catalog describing them.
    """

    format: str
    files: list[Path] = field(default_factory=list)
    catalog: Path | None = None


def export_store(store: str | os.PathLike, format: str, out_dir: str | os.PathLike, *,
                 group: str | None = None, overwrite: bool = False) -> ExportResult:
    """Export an embedding store as COGs (one per CRS and date) or one GeoParquet file.

    Parameters
    ----------
    store : str or path
        An embedding store written by :func:`xterrafm.embed_to_zarr` or ``xterrafm embed``.
    format : {"cog", "geoparquet"}
    out_dir : str or path
        Output folder (created); a ``catalog.json`` describing the files is written there.
    group : str, optional
        Only this CRS group of a multi-CRS store.
    overwrite : bool
        Replace files that exist.

    Returns
    -------
    ExportResult
    """
    if format not in EXPORT_FORMATS:
        raise UsageError(f"format must be one of {list(EXPORT_FORMATS)}; got {format!r}")
    if format == "cog":
        from xterrafm.export.cog import export_cog

        files = export_cog(store, out_dir, group=group, overwrite=overwrite)
    else:
        from xterrafm.export.geoparquet import export_geoparquet

        files = [export_geoparquet(store, out_dir, group=group, overwrite=overwrite)]
    return ExportResult(format=format, files=files,
                        catalog=Path(out_dir).absolute() / "catalog.json")
