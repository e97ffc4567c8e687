"""Turn a batch job's SOURCE arguments into lazy cubes, one per CRS.

SOURCE forms (decided from the text, no network access needed to classify):

- ``stac-api``: an ``http(s)://`` URL not ending in ``.json`` (a STAC API root);
- ``stac-static``: a ``.json`` path or URL: a static ``catalog.json``/collection or an
  ItemCollection / FeatureCollection;
- ``geotiff``: ``.tif``/``.tiff`` paths or URLs (several allowed);
- ``zarr``: a path or URL ending in ``.zarr`` (a cube written by :mod:`xterrafm.io`).

STAC items are grouped by their projection (``proj:code`` / ``proj:epsg``;
:func:`xterrafm.io.stac_calibration.group_items_by_crs`, as :func:`xterrafm.io.load_stac_per_crs`
does) so that an area spanning several UTM zones becomes one cube per zone, each on its native
grid: no reprojection of Sentinel-2 tiles across zones.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import SourceError

__all__ = [
    "SourceError",
    "SourceSelection",
    "SourceSpec",
    "classify_sources",
    "crs_group_name",
    "modality_from_collection",
    "open_cubes",
    "read_chunks",
    "read_stac_items",
    "synthetic_scene_for",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSelection:
    """What a batch job reads.

    Attributes
    ----------
    sources : tuple of str
        SOURCE hrefs; empty means "generate the synthetic scene next to the output".
    collection, bbox, datetime : optional
        STAC selection (``bbox`` in degrees: west, south, east, north).
    modality : str, optional
        Input modality; default from the collection or the cube's attrs.
    chunk : int, optional
        Spatial read chunk in pixels (bounds memory per task).
    synthetic_size : int
        Side in pixels of the generated synthetic scene.
    """

    sources: tuple[str, ...] = ()
    collection: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    modality: str | None = None
    chunk: int | None = None
    synthetic_size: int = 448


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


def crs_group_name(crs: str) -> str:
    """Zarr group name for a CRS: ``"EPSG:32632"`` -> ``"EPSG_32632"``."""
    return "".join(c if c.isalnum() else "_" for c in str(crs))


def synthetic_scene_for(out: Path, size: int) -> Any:
    """The synthetic scene used when no SOURCE is given: generated once next to ``out``.

    The scene lives in ``<out's folder>/synthetic-scene-<size>px``; it is deterministic (seed
    0), so an existing complete one is reused. It is written to a temporary folder first and
    renamed, so an interrupted generation never leaves a half scene behind.
    """
    from xterrafm.datasets.scene import make_synthetic_scene

    folder = Path(out).absolute().parent / f"synthetic-scene-{size}px"
    marker = folder / ".complete"
    if not marker.exists():
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the synthetic scene (%d x %d px) in %s", size, size, folder)
        make_synthetic_scene(tmp, seed=0, width=size, height=size, n_dates=2,
                             modalities=("s2_l2a",))
        (tmp / ".complete").write_text("ok")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder / "stac" / "item_collections" / "s2_l2a.json"


def read_chunks(chunk: int | None) -> dict[str, int] | None:
    """Reader chunks ``{"y": px, "x": px}`` of a ``--chunk`` value (None: the reader's default)."""
    return {"y": chunk, "x": chunk} if chunk else None


def read_stac_items(sel: SourceSelection, href: str, kind: str) -> tuple[list[Any], dict[str, str]]:
    """Items of a STAC SOURCE, filtered, with absolute asset hrefs (so groups can be re-loaded),
    and where each came from (its own href, else the file or URL holding it) by item id."""
    with import_gate():
        from pystac.utils import make_absolute_href

    from xterrafm.io.stac_items import resolve_items

    if kind == "stac-api" and not sel.collection:
        raise SourceError("a STAC API SOURCE needs --collection")
    try:
        pairs = resolve_items(href, bbox=sel.bbox, datetime=sel.datetime,
                              collections=sel.collection)
    except ValueError as err:
        raise SourceError(str(err)) from err
    collections = sorted({str(item.collection_id) for item, _ in pairs})
    if sel.collection is None and len(collections) > 1:
        raise SourceError(f"{href} holds several collections {collections}; choose one with "
                          "--collection")
    items, origins = [], {}
    for item, base in pairs:
        origins[item.id] = item.get_self_href() or base or href
        item = item.clone()
        for asset in item.assets.values():
            asset.href = make_absolute_href(asset.href, base) if base else asset.href
        items.append(item)
    return items, origins


def open_cubes(sel: SourceSelection, out: Path) -> dict[str, Any]:
    """Open a job's inputs as lazy cubes, one per CRS.

    Parameters
    ----------
    sel : SourceSelection
        SOURCE and selection; no SOURCE means the synthetic scene, generated next to ``out``.
    out : Path
        The job's output store.

    Returns
    -------
    dict
        ``{"EPSG:32632": DataArray, ...}``: dask-backed ``(time, band, y, x)`` cubes, each with
        ``attrs["source_hrefs"]``: the items (or files) it was read from.

    Raises
    ------
    SourceError
        No SOURCE could be resolved (no items, unknown form).
    """
    from xterrafm.io.geotiff import open_geotiff
    from xterrafm.io.stac import load_stac
    from xterrafm.io.stac_calibration import group_items_by_crs
    from xterrafm.io.zarr_store import open_zarr_cube

    chunks = read_chunks(sel.chunk)
    sources = list(sel.sources)
    if not sources:
        sources = [str(synthetic_scene_for(out, sel.synthetic_size))]
        if sel.modality not in (None, "s2_l2a"):
            raise SourceError("the synthetic scene is Sentinel-2 L2A; --modality must be s2_l2a")
    spec = classify_sources(sources)
    cubes: dict[str, Any] = {}
    if spec.kind in ("stac-api", "stac-static"):
        items, origins = read_stac_items(sel, spec.hrefs[0], spec.kind)
        modality = sel.modality or modality_from_collection(
            sel.collection or items[0].collection_id)
        if modality is None:
            raise SourceError(f"cannot tell the modality of collection "
                              f"{items[0].collection_id!r}; pass --modality")
        for crs, group in group_items_by_crs(items).items():
            cube = load_stac(group, modality=modality, bbox=sel.bbox, crs=crs, chunks=chunks)
            cube.attrs["source_hrefs"] = sorted({origins[it.id] for it in group})
            cubes[_crs_key(cube) if crs is None else str(crs)] = cube
    elif spec.kind == "geotiff":
        if sel.modality is None:
            raise SourceError("GeoTIFF SOURCE needs --modality (s1, s2_l1c or s2_l2a)")
        cube = open_geotiff(_geotiff_paths(spec.hrefs, sel.modality), sel.modality,
                                chunks=chunks)
        cube.attrs["source_hrefs"] = list(spec.hrefs)
        cubes[_crs_key(cube)] = cube
    else:
        cube = open_zarr_cube(spec.hrefs[0], chunks=chunks or "auto")
        if sel.modality is not None:
            cube.attrs["modality"] = sel.modality
        cube.attrs["source_hrefs"] = [spec.hrefs[0]]
        cubes[_crs_key(cube)] = cube
    return cubes


def _crs_key(cube: Any) -> str:
    """``"EPSG:<code>"`` of a cube's CRS when it has one, else its WKT."""
    crs = cube.odc.geobox.crs
    return f"EPSG:{crs.epsg}" if crs.epsg is not None else crs.to_wkt()


def _geotiff_paths(hrefs: tuple[str, ...], modality: str) -> Any:
    """One multi-band file as is; band files keyed by band name when their names say it.

    A shell glob sorts ``B8A`` after ``B12``, so files named after bands are matched by name
    rather than by order.
    """
    from xterrafm.bands import get_modality

    if len(hrefs) == 1:
        return hrefs[0]
    names = {b.upper() for b in get_modality(modality).band_names}
    stems = [Path(h.rsplit("/", 1)[-1]).stem.upper() for h in hrefs]
    if all(stem in names for stem in stems) and len(set(stems)) == len(stems):
        return dict(zip(stems, hrefs, strict=True))
    return list(hrefs)
