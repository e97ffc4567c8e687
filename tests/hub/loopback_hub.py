"""A Hugging Face Hub stand-in on 127.0.0.1 that speaks the file-resolve protocol huggingface_hub uses.

What ``huggingface_hub.hf_hub_download`` (2.x) needs from a hub, read from its source
(``file_download.py``: ``get_hf_file_metadata``, ``_get_metadata_or_catch_error``, ``http_get``;
``utils/_http.py``: ``_httpx2_follow_hub_redirects_with_backoff``, ``hf_raise_for_status``):

* ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`` (revision URL-quoted), sent with
  ``Accept-Encoding: identity``. The answer must carry ``X-Repo-Commit`` (the commit the
  revision resolves to; without it the client refuses the endpoint) and an ETag: ``X-Linked-Etag``
  is preferred over ``ETag``; quotes and ``W/`` are stripped and the value names the cache blob.
  For LFS files the hub puts the file's SHA-256 there. The size comes from ``X-Linked-Size``, or
  from ``Content-Length`` when the answer is not a redirect.
* Large (LFS) files: the HEAD answer is a ``302`` whose ``Location`` points to another origin
  (a CDN). The client follows redirects only while they stay on the hub's origin; it stops at
  the first off-hub redirect and takes the metadata from that response, then sends its ``GET``
  straight to ``Location``.
* ``GET`` of the file: ``Content-Length``; on a broken connection (``RemoteProtocolError``,
  connect errors, timeouts) the client waits a second and resumes with ``Range: bytes=N-``,
  which must be answered ``206`` with ``Content-Range: bytes N-END/SIZE`` (a ``200`` makes it
  start again). When fewer bytes than the declared size arrive over a cleanly closed answer,
  it raises ``OSError("Consistency check failed ...")``. It never checks the bytes' hash.
* Errors: ``X-Error-Code`` ``RepoNotFound`` (401), ``RevisionNotFound`` / ``EntryNotFound``
  (404, with ``X-Repo-Commit`` for the latter).
* Temporary files are unique to each download and deleted on failure (huggingface_hub 2.x):
  an interrupted download is resumed within the call, not by a later call.

Files are served from disk, so a ViT-B checkpoint (450 MB) streams without being held in memory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class Request:
    """One request a server answered: which origin, method, path and headers."""

    origin: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class Fault:
    """Misbehaviour of the CDN for one blob, for the next ``times`` GETs (None: always).

    ``kind``: ``"truncate"`` (a clean answer of only ``nbytes`` bytes, its Content-Length
    saying so), ``"drop"`` (Content-Length of the whole file, ``nbytes`` bytes sent, then the
    connection is closed), ``"corrupt"`` (the whole length, one byte flipped at ``nbytes``),
    ``"ignore-range"`` (Range requests answered with the whole file, ``200``).
    """

    kind: str
    nbytes: int = 0
    times: int | None = 1


@dataclass
class Repo:
    """A model repository: commits (filename -> file on disk) and refs (name -> commit)."""

    commits: dict[str, dict[str, Path]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


class LoopbackHub:
    """A hub origin and a CDN origin on 127.0.0.1 (two ports, so two origins), in threads.

    Use as a context manager. ``publish(repo_id, {filename: path})`` adds a commit (and moves
    ``main`` to it); ``requests`` lists what was asked; ``faults[sha256]`` makes the CDN misbehave.
    ``lfs=False`` serves files from the hub origin itself (no redirect, ETag = SHA-256).
    """

    def __init__(self, lfs: bool = True) -> None:
        self.lfs = lfs
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, Path] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # -- contents ------------------------------------------------------------------------------
    def publish(self, repo_id: str, files: dict[str, Path], ref: str = "main") -> str:
        """Add a commit holding ``files`` (copied by reference) and point ``ref`` at it."""
        repo = self.repos.setdefault(repo_id, Repo())
        digests = {name: file_digest(Path(p)) for name, p in sorted(files.items())}
        parent = repo.refs.get(ref, "")
        commit = hashlib.sha1(f"{parent}{sorted(digests.items())}".encode()).hexdigest()
        repo.commits[commit] = {name: Path(p) for name, p in files.items()}
        repo.refs[ref] = commit
        for name, digest in digests.items():
            self.blobs[digest] = Path(files[name])
        return commit

    def gets(self, origin: str = "cdn") -> list[Request]:
        """GET requests answered by ``origin``."""
        with self._lock:
            return [r for r in self.requests if r.origin == origin and r.method == "GET"]

    def count(self, method: str, origin: str) -> int:
        with self._lock:
            return sum(r.origin == origin and r.method == method for r in self.requests)

    @property
    def url(self) -> str:
        """The endpoint to put in ``HF_ENDPOINT``."""
        return self._url(0)

    @property
    def cdn_url(self) -> str:
        return self._url(1)

    def _url(self, i: int) -> str:
        host, port = self._servers[i].server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> LoopbackHub:
        for origin in ("hub", "cdn"):
            handler = type(f"{origin.title()}Handler", (_Handler,), {"hub": self, "origin": origin})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- protocol ------------------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[int, dict[str, str], Path | None]:
        """Status, headers and file of a ``/{repo}/resolve/{revision}/{filename}`` request."""
        repo_id, sep, rest = path.lstrip("/").partition("/resolve/")
        if not sep or "/" not in rest:
            return 404, {"X-Error-Code": "EntryNotFound"}, None
        revision, filename = rest.split("/", 1)
        revision, filename = unquote(revision), unquote(filename)
        repo = self.repos.get(repo_id)
        if repo is None:
            return 401, {"X-Error-Code": "RepoNotFound",
                         "X-Error-Message": "Repository not found"}, None
        commit = repo.refs.get(revision, revision if revision in repo.commits else None)
        if commit is None:
            return 404, {"X-Error-Code": "RevisionNotFound",
                         "X-Error-Message": "Invalid rev id"}, None
        file = repo.commits[commit].get(filename)
        if file is None:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit,
                         "X-Error-Message": "Entry not found"}, None
        digest = file_digest(file)
        size = str(os.path.getsize(file))
        headers = {"X-Repo-Commit": commit}
        if self.lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {size}\n"
            headers.update({
                "ETag": f'"{hashlib.sha1(pointer.encode()).hexdigest()}"',
                "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": size,
                "Location": f"{self.cdn_url}/blobs/{digest}?repo={repo_id}&sig=loopback",
            })
            return 302, headers, None
        headers["ETag"] = f'"{digest}"'
        return 200, headers, file

    def take_fault(self, digest: str) -> Fault | None:
        with self._lock:
            fault = self.faults.get(digest)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[digest]
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LoopbackHub
    origin: str

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _record(self) -> str:
        path = urlsplit(self.path).path
        with self.hub._lock:
            self.hub.requests.append(Request(self.origin, self.command, path,
                                             {k.lower(): v for k, v in self.headers.items()}))
        return path

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = self._record()
        if self.origin == "hub":
            status, headers, file = self.hub.resolve(path)
            if file is None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send_file(file, headers, body, fault=None)
            return
        digest = path.rsplit("/", 1)[-1]
        file = self.hub.blobs.get(digest)
        if not path.startswith("/blobs/") or file is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        fault = self.hub.take_fault(digest) if body else None
        self._send_file(file, {"ETag": f'"{digest}"'}, body, fault)

    def _send_file(self, file: Path, headers: dict[str, str], body: bool,
                   fault: Fault | None) -> None:
        size = os.path.getsize(file)
        start, stop = 0, size
        match = _RANGE.fullmatch(self.headers.get("Range", "").strip())
        if match and not (fault and fault.kind == "ignore-range"):
            first, last = match.groups()
            start = int(first) if first else max(0, size - int(last))
            stop = int(last) + 1 if first and last else size
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        else:
            self.send_response(200)
        length = stop - start
        if fault and fault.kind == "truncate":
            length = min(length, fault.nbytes)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not body:
            return
        with open(file, "rb") as fh:
            fh.seek(start)
            if fault and fault.kind == "drop":
                self.wfile.write(fh.read(min(fault.nbytes, length)))
                self.wfile.flush()
                self.close_connection = True
                return
            if fault and fault.kind == "corrupt":
                data = bytearray(fh.read(length))
                data[fault.nbytes] ^= 0xFF
                self.wfile.write(bytes(data))
                return
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


def copy_into(src: Path, dst_dir: Path, name: str) -> Path:
    """Copy ``src`` to ``dst_dir/name`` (the hub's copy stays fixed while tests change theirs)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(src, dst_dir / name))
