"""Where things live in an embedding store, and the bookkeeping that makes it resumable.

A store written by :func:`xterrafm.embed_to_zarr` is a Zarr group (v2 by default, which the
GDAL of the rasterio wheels reads; v3 on request) holding

* the ``embeddings`` variable (and ``scales`` for int8 stores, :mod:`xterrafm.store.encoding`)
  and its coordinates, written first as a *template* (metadata, coordinates, attrs, no
  embedding chunks) with Zarr chunks equal to the dask blocks, so that blocks never share a
  chunk and can be written concurrently (no sharding: one writer per stored object);
* in the group attrs, ``xterrafm_fingerprint``: the settings the store was written with
  (:func:`store_fingerprint`: the plan's fingerprint, the data type and the layout version);
  a run with other settings is refused. Beside it, the geo-embeddings convention attributes
  (:mod:`xterrafm.store.conventions`);
* bookkeeping under the ``embeddings`` array's prefix, ``embeddings/.xterrafm/``:
  ``template.done`` once the template is complete, and ``blocks/<region>.json``, one
  completion marker per block, named by the output region it covers
  (:func:`region_name`) and written after the block's chunks are stored. A marker records the
  block's counts and, for every chunk it vouches for, the chunk's key, size and CRC-32
  (:mod:`xterrafm.store.markers`), so a resume trusts it only while those chunks are there
  whole. Zarr never lists keys under an array's prefix, so ``xr.open_zarr`` and Zarr's
  traversals see a plain hierarchy; the markers go when the array goes. Each marker is one
  object written whole (a rename on local disks, one PUT on object stores), so concurrent
  writers never share one and a killed process leaves none half written.

Next to the store (not inside it: Zarr warns about any other object in a group), a STAC Item
describes it: ``<stem>.stac-item.json`` in the folder holding the store, where the stem is the
store's name without ``.zarr`` (and, for a group inside a multi-CRS store, joined with the
group's name: ``emb_EPSG_32632.stac-item.json``); see :func:`item_location` and
:mod:`xterrafm.store.stac_item`.

A resumed run adopts the chunk grid of the store it resumes (:func:`store_chunks`), whatever
read chunks it was given, so its blocks are the store's chunks.
"""

from __future__ import annotations

import json
import time
from typing import Any

from xterrafm._imports import import_gate

__all__ = [
    "FINGERPRINT_ATTR",
    "ITEM_SUFFIX",
    "META_DIR",
    "STORE_LAYOUT",
    "VAR",
    "fingerprint_diff",
    "item_location",
    "marker_paths",
    "read_fingerprint",
    "read_json",
    "region_name",
    "store_chunks",
    "store_fingerprint",
    "store_fs",
    "store_path",
    "write_json",
]

#: Name of the embedding variable.
VAR = "embeddings"
#: Bookkeeping folder, relative to the store root (under the array's prefix).
META_DIR = f"{VAR}/.xterrafm"
#: Group attribute holding the fingerprint (a JSON string).
FINGERPRINT_ATTR = "xterrafm_fingerprint"
#: Version of the store layout (markers by region with chunk records, data types, STAC item).
STORE_LAYOUT = 2
#: File name ending of the STAC Item written next to every store.
ITEM_SUFFIX = ".stac-item.json"


def store_fingerprint(plan_fingerprint: dict, dtype: str) -> dict:
    """The fingerprint of a store: the plan's (:attr:`EmbedPlan.fingerprint
    <xterrafm.embedding.plan.EmbedPlan.fingerprint>`), the stored data type and the layout
    version. Two stores with the same fingerprint are interchangeable block by block."""
    return {**plan_fingerprint, "dtype": dtype, "store_layout": STORE_LAYOUT}


def store_fs(store: str) -> tuple[Any, str]:
    """The fsspec file system of a store path or URL, and the store's root path in it."""
    with import_gate():
        from fsspec.core import url_to_fs

    return url_to_fs(str(store))


def store_path(root: str, *parts: str) -> str:
    """``root/part/part...`` in the store's file system."""
    return "/".join([root.rstrip("/"), *parts])


def _is_group(fs: Any, folder: str) -> bool:
    return any(fs.exists(store_path(folder, name)) for name in ("zarr.json", ".zgroup"))


def item_location(store: str) -> tuple[str, str, str]:
    """Where the STAC Item of a store goes: ``(path in the store's file system, the store's
    href relative to the Item, the Item's id)``.

    The Item goes in the nearest folder above the store that is not itself a Zarr group, so
    that no Zarr group holds a foreign object.
    """
    fs, root = store_fs(store)
    parts = root.rstrip("/").split("/")
    k = len(parts) - 1
    while k > 1 and _is_group(fs, "/".join(parts[:k])):
        k -= 1
    names = parts[k:]
    first = names[0][:-5] if names[0].endswith(".zarr") else names[0]
    stem = "_".join([first, *names[1:]])
    folder = "/".join(parts[:k])
    return store_path(folder, stem + ITEM_SUFFIX), "./" + "/".join(names), stem


def region_name(region: list[tuple[int, int]] | tuple, dims: tuple[str, ...]) -> str:
    """Marker name of the output region ``[(start, stop), ...]`` along ``dims``: the ranges of
    every dimension but ``embedding`` (always whole), e.g. ``"time0-1.y0-4.x4-8"``."""
    return ".".join(f"{d}{int(a)}-{int(b)}" for d, (a, b) in zip(dims, region, strict=True)
                    if d != "embedding")


def read_json(fs: Any, path: str) -> dict | None:
    """A JSON object from ``path``; None when there is no such file."""
    try:
        with fs.open(path, "rb") as fh:
            return json.loads(fh.read().decode())
    except FileNotFoundError:
        return None


def write_json(fs: Any, path: str, obj: dict) -> None:
    """Write ``obj`` to ``path`` whole: a rename of a temporary file on local disks."""
    with import_gate():
        from fsspec.implementations.local import LocalFileSystem

    data = json.dumps(obj, sort_keys=True).encode()
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp-{time.time_ns()}"
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, data)


def marker_paths(fs: Any, root: str) -> list[str]:
    """Paths of the block completion markers of a store."""
    folder = store_path(root, META_DIR, "blocks")
    if not fs.exists(folder):
        return []
    return [p for p in fs.ls(folder, detail=False) if p.endswith(".json")]


def read_fingerprint(store: str) -> dict | None:
    """The fingerprint kept in the group attrs (None when the path is not such a group)."""
    with import_gate():
        import zarr

    try:
        text = zarr.open_group(str(store), mode="r").attrs.get(FINGERPRINT_ATTR)
    except Exception:  # noqa: BLE001 - not a Zarr group at all
        return None
    return json.loads(text) if isinstance(text, str) else None


def store_chunks(store: str) -> dict[str, int] | None:
    """Zarr chunk size per dimension of a store's ``embeddings`` (None without a template)."""
    with import_gate():
        import zarr

    try:
        arr = zarr.open_array(store=str(store), path=VAR, mode="r")
    except Exception:  # noqa: BLE001 - no template (yet), or not an embedding store
        return None
    names = getattr(arr.metadata, "dimension_names", None) or arr.attrs.get("_ARRAY_DIMENSIONS")
    if not names:
        return None
    return {str(d): int(c) for d, c in zip(names, arr.chunks, strict=True)}


def fingerprint_diff(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints, for an error message.

    Settings are named with both values; when only the scene differs (grid or dates), that is
    said instead.
    """
    scene = ("grid", "time")
    keys = [*new, *(k for k in old if k not in new)]
    out = [f"{k}: store has {old.get(k)!r}, this run has {new.get(k)!r}"
           for k in keys if k not in scene and old.get(k) != new.get(k)]
    if not out:
        out = [f"{k} differs (another scene, subset or dates)" for k in scene
               if old.get(k) != new.get(k)]
    return out
