"""Where things live in an embedding store, and the bookkeeping that makes it resumable.

A store written by :func:`xterrafm.embed_to_zarr` is a Zarr group (v3 by default) holding

* the ``embeddings`` variable and its coordinates, written first as a *template* (metadata,
  coordinates, attrs, no embedding chunks) with Zarr chunks equal to the dask blocks, so that
  blocks never share a chunk and can be written concurrently;
* in the group attrs, ``xterrafm_fingerprint``: the settings the store was written with
  (:attr:`xterrafm.embedding.plan.EmbedPlan.fingerprint`); a run with other settings is
  refused;
* bookkeeping under the ``embeddings`` array's prefix, ``embeddings/.xterrafm/``:
  ``template.done`` once the template is complete, and ``blocks/<i>.<j>...json``, one
  completion marker per block (block index along every dimension), written after the block's
  region is stored and holding its counts. Zarr never lists keys under an array's prefix, so
  ``xr.open_zarr`` and Zarr's traversals see a plain hierarchy; the markers go when the array
  goes. Each marker is one object written whole (a rename on local disks, one PUT on object
  stores), so concurrent writers never share one and a killed process leaves none half written.
"""

from __future__ import annotations

import json
import time
from typing import Any

from xterrafm._imports import import_gate

__all__ = [
    "FINGERPRINT_ATTR",
    "META_DIR",
    "VAR",
    "block_name",
    "fingerprint_diff",
    "marker_paths",
    "read_fingerprint",
    "read_json",
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


def store_fs(store: str) -> tuple[Any, str]:
    """The fsspec file system of a store path or URL, and the store's root path in it."""
    with import_gate():
        from fsspec.core import url_to_fs

    return url_to_fs(str(store))


def store_path(root: str, *parts: str) -> str:
    """``root/part/part...`` in the store's file system."""
    return "/".join([root.rstrip("/"), *parts])


def block_name(idx: tuple[int, ...]) -> str:
    """Marker name of a block: its indices joined by dots (``"0.0.2.1"``)."""
    return ".".join(str(i) for i in idx)


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
