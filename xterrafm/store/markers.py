"""Block completion markers that vouch only for chunks that are really there.

A block's marker (``embeddings/.xterrafm/blocks/<region>.json``, see
:mod:`xterrafm.store.layout`) is written after the block's chunks are stored. It holds

* ``region``: the block's ``[start, stop)`` along every dimension of ``embeddings``;
* ``cells_embedded``, ``cells_empty``: its counts;
* ``chunks``: for every chunk the block wrote, keyed by its path in the store
  (``"embeddings/0.0.1.2"``, ``"scales/0.1.2"``), ``{"nbytes": N, "crc32": C}`` of the stored
  object, or None where Zarr stored nothing (a chunk of fill values only).

:func:`check_markers` trusts a marker only when each of those chunks is as recorded: present
with the recorded size (``verify="size"``, one listing of the store, the default), and with
the recorded CRC-32 as well (``verify="checksum"``, which reads every chunk once). A chunk
that is missing, torn (another size) or altered makes its block *damaged*: the block is
written again by the next run, which reports how many it repaired.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xterrafm.errors import UsageError
from xterrafm.store.layout import META_DIR, marker_paths, store_path, write_json

__all__ = ["VERIFY_LEVELS", "MarkerCheck", "check_markers", "chunk_record", "marker_path",
           "read_markers", "remove_markers", "write_marker"]

#: How closely a resume checks the chunks a marker vouches for.
VERIFY_LEVELS = ("size", "checksum")


def marker_path(root: str, name: str) -> str:
    """Path of the marker ``name`` (a :func:`~xterrafm.store.layout.region_name`)."""
    return store_path(root, META_DIR, "blocks", name + ".json")


def chunk_record(fs: Any, root: str, key: str) -> dict[str, int] | None:
    """Size and CRC-32 of the stored object ``key`` (a path relative to the store root), or
    None when there is none."""
    try:
        data = fs.cat_file(store_path(root, key))
    except FileNotFoundError:
        return None
    return {"nbytes": len(data), "crc32": zlib.crc32(data)}


def write_marker(fs: Any, root: str, name: str, *, region: list[tuple[int, int]],
                 embedded: int, empty: int, chunks: Mapping[str, dict | None]) -> None:
    """Write the completion marker of one block (whole, in one object)."""
    write_json(fs, marker_path(root, name),
               {"region": [[int(a), int(b)] for a, b in region], "cells_embedded": int(embedded),
                "cells_empty": int(empty), "chunks": dict(chunks)})


def read_markers(fs: Any, root: str, names: Iterable[str] | None = None) -> dict[str, dict]:
    """The markers of a store by name (only ``names`` when given); unreadable ones are left out
    (a marker is written whole, so one that does not parse was never finished)."""
    paths = marker_paths(fs, root)
    if names is not None:
        wanted = set(names)
        paths = [p for p in paths if p.rsplit("/", 1)[-1][:-5] in wanted]
    out = {}
    for path, data in (fs.cat(paths).items() if paths else ()):
        try:
            out[path.rsplit("/", 1)[-1][:-5]] = json.loads(data)
        except ValueError:
            continue
    return out


def remove_markers(fs: Any, root: str, names: Iterable[str]) -> None:
    """Delete the markers ``names`` (their blocks are to be written again)."""
    paths = [marker_path(root, n) for n in names]
    if paths:
        fs.rm(paths)


@dataclass
class MarkerCheck:
    """Markers sorted by whether their chunks are as recorded.

    Attributes
    ----------
    trusted : dict
        Marker name -> marker, for markers whose chunks are all as recorded.
    damaged : dict
        Marker name -> why it is not trusted (``"embeddings/0.0.1.2 missing"``, ``"... torn:
        1203 of 2406 bytes"``, ``"... checksum differs"``).
    """

    trusted: dict[str, dict] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)


def _sizes(fs: Any, root: str, arrays: Iterable[str]) -> dict[str, int]:
    """``{key relative to the root: size}`` of the objects stored under ``arrays``."""
    out: dict[str, int] = {}
    prefix = root.rstrip("/") + "/"
    for name in arrays:
        folder = store_path(root, name)
        if not fs.exists(folder):
            continue
        for path, info in fs.find(folder, detail=True).items():
            rel = path[len(prefix):] if path.startswith(prefix) else path
            if "/.xterrafm/" not in f"/{rel}":
                out[rel] = int(info.get("size") or 0)
    return out


def _problem(key: str, rec: dict | None, sizes: Mapping[str, int]) -> str | None:
    if rec is None:
        return f"{key} holds data where the block had none" if key in sizes else None
    if key not in sizes:
        return f"{key} missing"
    if sizes[key] != int(rec["nbytes"]):
        return f"{key} torn: {sizes[key]} of {int(rec['nbytes'])} bytes"
    return None


def check_markers(fs: Any, root: str, markers: Mapping[str, dict],
                  verify: str = "size") -> MarkerCheck:
    """Sort ``markers`` into trusted and damaged by checking the chunks each vouches for.

    Parameters
    ----------
    fs, root
        The store's file system and root path (:func:`~xterrafm.store.layout.store_fs`).
    markers : mapping
        Marker name -> marker (:func:`read_markers`).
    verify : {"size", "checksum"}
        ``"size"``: each chunk is present with its recorded size (one listing); ``"checksum"``:
        its bytes also have the recorded CRC-32 (reads every chunk).

    Returns
    -------
    MarkerCheck
    """
    if verify not in VERIFY_LEVELS:
        raise UsageError(f"verify must be one of {list(VERIFY_LEVELS)}; got {verify!r}")
    arrays = {str(k).split("/", 1)[0] for m in markers.values()
              for k in (m.get("chunks") or {}) if isinstance(m.get("chunks"), dict)}
    sizes = _sizes(fs, root, sorted(arrays))
    check = MarkerCheck()
    to_read: dict[str, list[tuple[str, int]]] = {}
    for name, marker in markers.items():
        chunks = marker.get("chunks")
        if not isinstance(chunks, dict) or not chunks:
            check.damaged[name] = "the marker records no chunks (older store layout)"
            continue
        problems = [p for p in (_problem(k, r, sizes) for k, r in chunks.items()) if p]
        if problems:
            check.damaged[name] = "; ".join(problems)
        elif verify == "checksum":
            to_read[name] = [(k, int(r["crc32"])) for k, r in chunks.items() if r is not None]
        else:
            check.trusted[name] = marker
    if to_read:
        keys = sorted({k for pairs in to_read.values() for k, _ in pairs})
        blobs = fs.cat([store_path(root, k) for k in keys]) if keys else {}
        crcs = {k: zlib.crc32(blobs[_key_path(blobs, root, k)]) for k in keys}
        for name, pairs in to_read.items():
            bad = [k for k, crc in pairs if crcs[k] != crc]
            if bad:
                check.damaged[name] = "; ".join(f"{k} checksum differs" for k in bad)
            else:
                check.trusted[name] = markers[name]
    return check


def _key_path(blobs: Mapping[str, bytes], root: str, key: str) -> str:
    """The key of ``fs.cat``'s result for ``key`` (file systems differ on leading slashes)."""
    path = store_path(root, key)
    if path in blobs:
        return path
    for candidate in blobs:
        if candidate.endswith("/" + key) or candidate == key:
            return candidate
    raise KeyError(key)
