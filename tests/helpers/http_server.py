"""A loopback HTTP server for reader tests and benchmarks: Range requests, injected failures.

It runs in a child process (``python tests/helpers/http_server.py CONFIG``) because GDAL holds
the GIL while it waits on HTTP, so a reader and its server must not share a process; use
:func:`serve_http`.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["HTTPServerProcess", "RangeHTTPServer", "serve_http"]


class _RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files like an object store: ``Range`` requests get ``206`` + ``Content-Range``.

    Failure injection is configured on the server object (see :class:`RangeHTTPServer`).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _injected_failure(self) -> bool:
        server: RangeHTTPServer = self.server  # type: ignore[assignment]
        path = self.path.split("?", 1)[0]
        with server.lock:
            server.n_requests += 1
            server.by_command[self.command] = server.by_command.get(self.command, 0) + 1
            if any(path.endswith(p) for p in server.fail_paths):
                server.n_failed += 1
                return True
            if server.fail_first:
                request = (self.command, path, self.headers.get("Range"))
                server.seen[request] = server.seen.get(request, 0) + 1
                if server.seen[request] <= server.fail_first:
                    server.n_failed += 1
                    return True
            if server.fail_every and self.command == "GET":
                server.n_get += 1
                if server.n_get % server.fail_every == 0:
                    server.n_failed += 1
                    return True
        return False

    def _send_failure(self) -> None:
        body = b"injected failure\n"
        self.send_response(503, "Service Unavailable (injected)")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        if self._injected_failure():
            self._send_failure()
            return
        super().do_HEAD()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/__stats__":
            server: RangeHTTPServer = self.server  # type: ignore[assignment]
            with server.lock:
                body = json.dumps(
                    {"requests": server.n_requests, "failed": server.n_failed,
                     **server.by_command}
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self._injected_failure():
            self._send_failure()
            return
        rng = self.headers.get("Range")
        if not rng:
            super().do_GET()
            return
        fs_path = self.translate_path(self.path)
        if not os.path.isfile(fs_path):
            self.send_error(404, "File not found")
            return
        size = os.path.getsize(fs_path)
        try:
            unit, spec = rng.split("=", 1)
            first, last = spec.split(",")[0].strip().split("-")
            if unit.strip() != "bytes":
                raise ValueError(unit)
            if first == "":  # suffix range: last N bytes
                start, end = max(0, size - int(last)), size - 1
            else:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
        except ValueError:
            self.send_error(400, "Bad Range header")
            return
        if start >= size or start > end:
            self.send_response(416, "Requested Range Not Satisfiable")
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(fs_path, "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.send_response(206, "Partial Content")
        self.send_header("Content-Type", self.guess_type(fs_path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RangeHTTPServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 serving ``root``, with Range support and failures.

    GDAL (through rasterio) holds the GIL while it waits on HTTP, so a reader and this server
    must not share a process: use :func:`serve_http`, which runs it in a child process.

    Parameters
    ----------
    root : path-like
        Directory served at ``/``.
    fail_every : int or None
        If set, every ``fail_every``-th GET answers ``503``.
    fail_first : int
        The first ``fail_first`` requests of each distinct (method, path, Range) answer ``503``:
        a transient failure that a retry of the same request overcomes, whatever other threads
        request meanwhile. HEAD requests fail too, which GDAL caches.
    fail_paths : iterable of str
        URL paths (suffix match) that always answer ``503`` (a permanent failure).

    Attributes
    ----------
    url : str
        Base URL, ``http://127.0.0.1:<port>``.
    n_requests, n_failed : int
        Requests seen and failures injected so far.
    """

    daemon_threads = True

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        fail_every: int | None = None,
        fail_first: int = 0,
        fail_paths: Iterable[str] = (),
    ) -> None:
        handler = functools.partial(_RangeRequestHandler, directory=os.fspath(root))
        super().__init__(("127.0.0.1", 0), handler)
        self.fail_every = fail_every
        self.fail_first = int(fail_first)
        self.seen: dict[tuple, int] = {}
        self.fail_paths = tuple(fail_paths)
        self.lock = threading.Lock()
        self.n_requests = self.n_get = self.n_failed = 0
        self.by_command: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RangeHTTPServer:
        """Serve in a daemon thread; returns ``self``."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RangeHTTPServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _serve_main() -> None:
    """Child-process entry of :func:`serve_http`: config as JSON in argv[1], prints the URL."""
    cfg = json.loads(sys.argv[1])
    srv = RangeHTTPServer(cfg["root"], fail_every=cfg.get("fail_every"),
                          fail_first=cfg.get("fail_first", 0), fail_paths=cfg.get("fail_paths", ()))
    print(srv.url, flush=True)
    srv.serve_forever()


class HTTPServerProcess:
    """Handle on a :class:`RangeHTTPServer` running in a child process (see :func:`serve_http`).

    Attributes
    ----------
    url : str
        Base URL, ``http://127.0.0.1:<port>``; files of ``root`` are at ``url + "/" + relpath``.
    """

    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self._proc = proc
        self.url = url

    def stats(self) -> dict[str, int]:
        """Requests so far: ``{"requests": n, "failed": n, "GET": n, "HEAD": n}``."""
        with urllib.request.urlopen(self.url + "/__stats__", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        """Terminate the child process."""
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@contextlib.contextmanager
def serve_http(
    root: str | os.PathLike,
    *,
    fail_every: int | None = None,
    fail_first: int = 0,
    fail_paths: Iterable[str] = (),
) -> Iterator[HTTPServerProcess]:
    """Serve ``root`` over HTTP on 127.0.0.1 from a child process, with Range requests.

    Parameters
    ----------
    root : path-like
        Directory to serve.
    fail_every : int or None
        Every ``fail_every``-th GET answers ``503``.
    fail_first : int
        The first ``fail_first`` requests of each distinct request answer ``503`` (transient
        failures; see :class:`RangeHTTPServer`).
    fail_paths : iterable of str
        URL path suffixes that always answer ``503`` (permanent failures).

    Yields
    ------
    HTTPServerProcess
        With ``.url`` and ``.stats()``; the process is stopped on exit.
    """
    cfg = {"root": os.fspath(root), "fail_every": fail_every, "fail_first": fail_first,
           "fail_paths": list(fail_paths)}
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        text=True,
    )
    handle = None
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"test HTTP server did not start (said {url!r})")
        handle = HTTPServerProcess(proc, url)
        yield handle
    finally:
        if handle is not None:
            handle.stop()
        else:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    _serve_main()
