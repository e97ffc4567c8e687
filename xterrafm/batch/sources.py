"""Turn a batch job's SOURCE arguments into lazy cubes, one per CRS.

SOURCE forms (decided from the text, no network access needed to classify):

- ``stac-api``: an ``http(s)://`` URL not ending in ``.json`` (a STAC API root);
- ``stac-static``: a ``.json`` path or URL: a static ``catalog.json``/collection or an
  ItemCollection / FeatureCollection;
- ``geotiff``: ``.tif``/``.tiff`` paths or URLs (several allowed);
- ``zarr``: a path or URL ending in ``.zarr`` (a cube written by :mod:`xterrafm.io`).

STAC items are grouped by their projection (``proj:code`` / ``proj:epsg``) so that an area
spanning several UTM zones becomes one cube per zone, each on its native grid: no
reprojection of Sentinel-2 tiles across zones.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xterrafm.errors import SourceError

__all__ = [
    "SourceError",
    "SourceSpec",
    "classify_sources",
    "crs_group_name",
    "group_items_by_crs",
    "item_crs",
    "modality_from_collection",
]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SourceSpec:
    """A classified SOURCE.

    Attributes
    ----------
    kind : str
        ``"stac-api"``, ``"stac-static"``, ``"geotiff"`` or ``"zarr"``.
    hrefs : tuple of str
        The paths or URLs as given.
    """

    kind: str
    hrefs: tuple[str, ...]


def _kind(href: str) -> str:
    lower = href.lower().rstrip("/")
    if lower.endswith(".zarr"):
        return "zarr"
    if lower.endswith((".tif", ".tiff")):
        return "geotiff"
    if lower.endswith((".json", ".geojson")):
        return "stac-static"
    if lower.startswith(("http://", "https://")):
        return "stac-api"
    raise SourceError(
        f"cannot tell what SOURCE {href!r} is: expected a STAC API URL (http(s)://...), a STAC "
        "catalog/ItemCollection (.json), GeoTIFF path(s) (.tif) or a Zarr cube (.zarr)"
    )


def classify_sources(sources: Sequence[str]) -> SourceSpec:
    """Classify SOURCE arguments; several hrefs must all be GeoTIFFs.

    Raises
    ------
    SourceError
        For an unrecognised or mixed SOURCE, or a missing local file.
    """
    from pathlib import Path

    if not sources:
        raise SourceError("no SOURCE given")
    kinds = {_kind(s) for s in sources}
    if len(kinds) > 1 or (len(sources) > 1 and kinds != {"geotiff"}):
        raise SourceError(
            f"several SOURCE arguments must all be GeoTIFFs; got {sorted(kinds)} from {list(sources)}"
        )
    for href in sources:
        if "://" not in href and not Path(href).exists():
            raise SourceError(f"SOURCE {href!r} does not exist")
    return SourceSpec(kinds.pop(), tuple(sources))


def modality_from_collection(collection: str | None) -> str | None:
    """Guess the modality from a STAC collection id (``sentinel-2-l2a`` -> ``s2_l2a``).

    Returns None when the id does not say (then ``--modality`` is needed).
    """
    text = (collection or "").lower()
    if "sentinel-1" in text or text.startswith("s1"):
        return "s1"
    if "l2a" in text and ("sentinel-2" in text or text.startswith("s2")):
        return "s2_l2a"
    if "l1c" in text and ("sentinel-2" in text or text.startswith("s2")):
        return "s2_l1c"
    return None


def item_crs(item: Any) -> str | None:
    """``"EPSG:<code>"`` (or the ``proj:code`` text) of an item, from item or asset metadata."""
    candidates = [item.properties]
    candidates += [asset.extra_fields for asset in item.assets.values()]
    for props in candidates:
        code = props.get("proj:code")
        if code:
            return str(code)
        epsg = props.get("proj:epsg")
        if epsg:
            return f"EPSG:{int(epsg)}"
    return None


def crs_group_name(crs: str) -> str:
    """Zarr group name for a CRS: ``"EPSG:32632"`` -> ``"EPSG_32632"``."""
    return "".join(c if c.isalnum() else "_" for c in str(crs))


def group_items_by_crs(items: Sequence[Any]) -> dict[str | None, list[Any]]:
    """Group STAC items by :func:`item_crs` (``None`` for items without projection metadata).

    Returns
    -------
    dict
        Ordered by CRS text; items keep their order within a group.
    """
    groups: dict[str | None, list[Any]] = defaultdict(list)
    for item in items:
        groups[item_crs(item)].append(item)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0]))))
