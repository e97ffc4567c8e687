"""Exports of embedding stores to the formats other embedding products use.

:func:`~xterrafm.export.cog.export_cog` writes one Cloud-Optimised GeoTIFF per CRS and date
(one named band per embedding dimension, declared nodata), and
:func:`~xterrafm.export.geoparquet.export_geoparquet` one GeoParquet file of valid cells
(footprint polygon, time, CRS, embedding); both write a static STAC catalog of the files
(:mod:`xterrafm.export.items`). :func:`export_store` picks one by name; ``python -m xterrafm
export`` (:mod:`xterrafm.export.cli`) is the same from the command line. Names are imported
from their modules on first use.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "export_cog": "cog",
    "export_geoparquet": "geoparquet",
    "EXPORT_FORMATS": "run",
    "ExportResult": "run",
    "export_store": "run",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
