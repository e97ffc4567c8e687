"""The published TerraFM weights on the Hugging Face Hub: where they are, how they are fetched and
checked, and how one download serves every Dask worker.

* :mod:`xterrafm.hub_pins` pins each variant to a repository, a file and, once known, a
  revision and the file's SHA-256.
* :func:`download_published_weights` fetches the pinned file with ``huggingface_hub``
  (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` read when called) and checks it.
* :func:`check_hub_file` checks a Hugging Face cache file (``.../models--owner--name/
  snapshots/<commit>/<file>``): its SHA-256 must equal the blob's name (the SHA-256 the hub
  declared for it) and the pin's, its commit a pinned commit. :func:`xterrafm.weights.
  read_weights` calls it for every such file, so every process (each Dask worker) checks what
  it loads; a snapshot path missing from this file system is first fetched at its commit.
* :func:`resolve_weights_for_cluster` turns ``"hf"`` into the checked file's path on the
  client, before a graph is built: workers get a path, so a cluster downloads once (once per
  machine when workers do not share the client's file system).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import WeightsDownloadError, WeightsMismatchError
from xterrafm.hub_pins import (
    DEFAULT_VARIANT,
    OVERRIDE_ENV,
    PUBLISHED,
    PublishedWeights,
    checked_pin,
    pins_for,
    published_weights,
)

__all__ = [
    "DEFAULT_VARIANT",
    "OVERRIDE_ENV",
    "PUBLISHED",
    "HubCachePath",
    "PublishedWeights",
    "check_hub_file",
    "clear_caches",
    "describe_source",
    "download_published_weights",
    "file_sha256",
    "is_hub_request",
    "parse_hub_cache_path",
    "published_weights",
    "resolve_weights_for_cluster",
    "stats",
]

_HUB_NAMES = {"hf", "huggingface"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CHUNK = 8 << 20


_LOCK = threading.Lock()
_STATS: Counter = Counter()
_DIGESTS: dict[tuple, str] = {}  # (real path, size, mtime_ns, inode) -> sha256 of the file
_RESOLVED: dict[tuple, str] = {}  # (pin, endpoint, cache dir) -> checked snapshot path




# -- cache paths -------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubCachePath:
    """A file of a Hugging Face cache: ``<cache>/models--owner--name/snapshots/<commit>/<file>``."""

    repo_id: str
    commit: str
    filename: str

    def source(self) -> str:
        """``hf://owner/name@commit/filename``."""
        return f"hf://{self.repo_id}@{self.commit}/{self.filename}"


def parse_hub_cache_path(path: str | os.PathLike) -> HubCachePath | None:
    """The repository, commit and file of a snapshot path of a Hugging Face cache, else None.

    The path is not resolved (a snapshot entry is a link to a blob named by its hash).
    """
    parts = Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).parts
    for i in range(1, len(parts) - 2):
        if (parts[i] == "snapshots" and parts[i - 1].startswith("models--")
                and _COMMIT.fullmatch(parts[i + 1])):
            repo = parts[i - 1][len("models--"):].split("--")
            if len(repo) != 2 or not all(repo):
                return None
            return HubCachePath("/".join(repo), parts[i + 1], "/".join(parts[i + 2:]))
    return None


def describe_source(path: str | os.PathLike) -> str:
    """``hf://owner/name@commit/file`` for a Hugging Face cache file, else the path itself."""
    info = parse_hub_cache_path(path)
    return info.source() if info is not None else os.fspath(path)


# -- hashing and checks ------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, streamed; remembered per process while the file's size,
    modification time and inode stay the same."""
    real = Path(path).resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns, st.st_ino)
    with _LOCK:
        known = _DIGESTS.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(real, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _LOCK:
        _DIGESTS[key] = value
        _STATS["files_hashed"] += 1
        _STATS["bytes_hashed"] += st.st_size
    return value


def _drop_corrupt_blob(snapshot: Path, blob: Path) -> bool:
    """Delete a cached blob whose bytes do not match its own name, and its snapshot link."""
    if blob.parent.name != "blobs":
        return False
    try:
        blob.unlink()
        if snapshot.is_symlink():
            snapshot.unlink()
    except OSError:
        return False
    return True


def check_hub_file(path: str | os.PathLike, pin: PublishedWeights | None = None) -> Path:
    """Check a weights file of a Hugging Face cache before it is read; other paths pass through.

    Parameters
    ----------
    path : path-like
        A file path. Only snapshot paths of a Hugging Face cache are checked.
    pin : PublishedWeights, optional
        The pin to check against; default: every pin (:func:`published_weights`) naming the
        file's repository and file name.

    Returns
    -------
    pathlib.Path
        The path to read: ``path``, or, when the snapshot does not exist in this file system,
        the same commit's file fetched into this machine's cache.

    Raises
    ------
    WeightsMismatchError
        The file's SHA-256 differs from the hub's declared hash (its blob name; the corrupt
        blob is deleted so that the next attempt downloads it again) or from the pin, or the
        commit differs from a pinned commit.
    WeightsDownloadError
        The snapshot had to be fetched and could not be.
    """
    p = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    info = parse_hub_cache_path(p)
    if info is None:
        return Path(path)
    if not p.exists():
        p = _fetch_commit(info)
    blob = p.resolve()
    digest = file_sha256(blob)
    with _LOCK:
        _STATS["file_checks"] += 1
    if _SHA256.fullmatch(blob.name) and digest != blob.name:
        dropped = _drop_corrupt_blob(p, blob)
        raise WeightsMismatchError(
            f"{info.source()}: the downloaded file has SHA-256 {digest}, but the hub declared "
            f"{blob.name}: the transfer was truncated or corrupted"
            + ("; the bad copy was deleted, run again to download it afresh" if dropped else
               f"; delete {blob} and run again"))
    for want in ([pin] if pin is not None else pins_for(info.repo_id, info.filename)):
        if want.revision and _COMMIT.fullmatch(want.revision) and info.commit != want.revision:
            raise WeightsMismatchError(
                f"{info.source()} is not the pinned revision {want.revision} of "
                f"{want.repo_id}/{want.filename}; pass the pinned file, or change the pin "
                f"(${OVERRIDE_ENV})")
        if want.sha256 and digest != want.sha256:
            raise WeightsMismatchError(
                f"{info.source()} has SHA-256 {digest}, but the pin of {want.variant} expects "
                f"{want.sha256}: the hub serves another file than the one xterrafm was checked "
                f"with. Check the repository's history, then pin the file you trust "
                f"(${OVERRIDE_ENV}) or pass a local copy")
    return p


# -- downloading -------------------------------------------------------------------------------
def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT", "").strip()
    return value.rstrip("/") or None


def _cache_dir(cache_dir: str | os.PathLike | None) -> str | None:
    if cache_dir is not None:
        return os.fspath(Path(cache_dir).expanduser())
    value = os.environ.get("HF_HUB_CACHE", "").strip()
    return value or None


def _hint(pin: PublishedWeights) -> str:
    return (f"Download {pin.filename} from https://huggingface.co/{pin.repo_id} on a machine with "
            f"internet access and pass the local file: xterrafm.load_model({pin.variant!r}, "
            f"weights='/path/to/{pin.filename}') (or a .safetensors made with "
            "xterrafm.convert_weights).")


def _hf_download(pin: PublishedWeights, revision: str | None, cache_dir: str | None) -> Path:
    try:
        with import_gate():
            from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise WeightsDownloadError(f"weights='hf' needs huggingface_hub (pip install "
                                   f"xterrafm[hub]). {_hint(pin)}") from err
    offline = _env_offline()
    try:
        path = hf_hub_download(repo_id=pin.repo_id, filename=pin.filename, revision=revision,
                               cache_dir=cache_dir, endpoint=_endpoint(),
                               local_files_only=offline)
    except Exception as err:  # noqa: BLE001 - every failure gets the same advice
        first = (str(err).strip().splitlines() or [""])[0]
        why = ("offline mode (HF_HUB_OFFLINE) is set and the file is not in the local cache"
               if offline else f"{type(err).__name__}: {first}")
        raise WeightsDownloadError(
            f"could not get {pin.filename} from the Hugging Face repo {pin.repo_id} at "
            f"{revision or 'main'} ({why}). {_hint(pin)}") from err
    with _LOCK:
        _STATS["hub_calls"] += 1
    return Path(path)


def _fetch_commit(info: HubCachePath) -> Path:
    """Fetch the file of a snapshot path that this file system lacks, at exactly its commit."""
    pins = pins_for(info.repo_id, info.filename)
    pin = pins[0] if pins else PublishedWeights("?", info.repo_id, info.filename)
    path = _hf_download(replace(pin, revision=info.commit), info.commit, _cache_dir(None))
    with _LOCK:
        _STATS["fetched_elsewhere"] += 1
    return path


def download_published_weights(name: str = DEFAULT_VARIANT,
                               cache_dir: str | os.PathLike | None = None, *,
                               revision: str | None = None, sha256: str | None = None) -> Path:
    """Path of a variant's published checkpoint in the Hugging Face cache, downloaded if needed.

    Parameters
    ----------
    name : str
        Model variant (``"terrafm-b"``).
    cache_dir : path-like, optional
        Hugging Face cache directory (default: ``HF_HUB_CACHE`` or huggingface_hub's default).
    revision, sha256 : str, optional
        Override the pin's revision (commit, branch or tag) and expected SHA-256.

    Returns
    -------
    pathlib.Path
        The checked snapshot path (see :func:`check_hub_file`).

    Raises
    ------
    WeightsError
        No published weights for ``name``.
    WeightsDownloadError
        Offline or unreachable and not cached, or the transfer failed (e.g. truncated); the
        message says how to pass a local file.
    WeightsMismatchError
        The file fails :func:`check_hub_file`.
    """
    from xterrafm.models import get_config

    pin = published_weights(get_config(name).name)
    pin = checked_pin(replace(pin, revision=revision or pin.revision,
                               sha256=sha256 or pin.sha256), "download_published_weights")
    path = _hf_download(pin, pin.revision, _cache_dir(cache_dir))
    return check_hub_file(path, pin=pin)


# -- clusters ----------------------------------------------------------------------------------
def is_hub_request(weights: Any) -> bool:
    """Whether ``weights`` asks for the published weights (``"hf"``/``"huggingface"``)."""
    return isinstance(weights, str) and weights.strip().lower() in _HUB_NAMES


def resolve_weights_for_cluster(weights: Any, model: str | None = None) -> str | None:
    """The weights argument that Dask tasks carry: a local path, or None for random init.

    ``"hf"`` is downloaded (or found in the cache) and checked here, once per process and pin,
    and becomes the snapshot path of the checked file: workers read that file (checking its
    hash again, :func:`check_hub_file`) instead of each asking the hub. Other paths become
    absolute (resolved, except Hugging Face snapshot paths, whose link names the file).

    Parameters
    ----------
    weights : path-like, "hf" or None
    model : str, optional
        Variant whose published weights ``"hf"`` means (default ``"terrafm-b"``).

    Raises
    ------
    TypeError
        ``weights`` is an in-memory state_dict (workers need a file).
    WeightsError, WeightsDownloadError, WeightsMismatchError
        As :func:`download_published_weights`.
    """
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        raise TypeError("a Dask cluster needs weights every worker can load: a file path (or "
                        "'hf'), not an in-memory state_dict; write it with "
                        "xterrafm.convert_weights")
    if is_hub_request(weights):
        from xterrafm.models.config import get_config

        pin = published_weights(get_config(model or DEFAULT_VARIANT).name)
        key = (pin, _endpoint(), _cache_dir(None), _env_offline())
        with _LOCK:
            known = _RESOLVED.get(key)
        if known is not None and os.path.exists(known):
            return known
        path = download_published_weights(pin.variant)
        _check_layout(path, pin.variant)
        with _LOCK:
            _RESOLVED[key] = os.fspath(path)
        return os.fspath(path)
    p = Path(os.fspath(weights)).expanduser()
    if parse_hub_cache_path(p) is not None:
        return os.path.abspath(p)
    return str(p.resolve())


def _check_layout(path: Path, variant: str) -> None:
    """Refuse, before any graph exists, a file whose keys or shapes do not fit ``variant``
    (names and shapes only: safetensors headers or a memory-mapped ``weights_only`` load;
    anything unusual goes through :func:`xterrafm.weights.read_weights` and its errors)."""
    with import_gate():
        import torch

    from xterrafm.models import TerraFM, get_config
    from xterrafm.weights import canonical_state_dict, check_state_dict, read_weights

    obj: Any = None
    if path.suffix.lower() == ".safetensors":
        with import_gate():
            from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as f:
            obj = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - legacy format or unsafe: read_weights says which
            obj = None
    sd = canonical_state_dict(obj) if obj is not None else read_weights(path)
    with torch.device("meta"):
        skeleton = TerraFM(get_config(variant))
    check_state_dict(skeleton, sd)


def stats() -> dict[str, Any]:
    """This process's counters (``hub_calls``, ``file_checks``, ``files_hashed``,
    ``bytes_hashed``, ``fetched_elsewhere``) and pid."""
    with _LOCK:
        out: dict[str, Any] = dict(_STATS)
    out["pid"] = os.getpid()
    return out


def clear_caches() -> None:
    """Forget remembered file hashes, resolved paths and counters of this process."""
    with _LOCK:
        _DIGESTS.clear()
        _RESOLVED.clear()
        _STATS.clear()
