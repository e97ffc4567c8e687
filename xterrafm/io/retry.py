"""Retrying raster reads: transient failures are retried with backoff, lasting ones name the href.

Two layers work together:

* GDAL's own HTTP retry (``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``) retries single HTTP
  requests that answer 429/500/502/503/504. :meth:`RetryPolicy.gdal_options` gives these options;
  :func:`xterrafm.io.load_stac` sets them in a ``rasterio.Env`` while the dask graph is built,
  odc-stac captures that environment into the graph, so the options are in effect on every
  dask worker, including a distributed cluster's.
* :class:`RetryingRioDriver`, an odc-loader reader driver, retries a whole chunk read (open +
  read + warp) with exponential backoff on any rasterio error, which also covers dropped
  connections and errors GDAL does not retry. GDAL's ``/vsicurl/`` remembers a failed look-up of
  a file (its HEAD request), so the attempt after such a failure, and the last attempt in any
  case, runs with ``CPL_VSIL_CURL_NON_CACHED`` set for that href; other retries keep GDAL's cache
  of the byte ranges already read, so that each attempt gets further than the one before even
  when many requests fail. After the last attempt it raises
  :class:`AssetReadError` naming the href, or, only when the load was asked to
  (``fail_on_error=False``, i.e. ``fill_failed=True`` in :func:`~xterrafm.io.load_stac`), logs a
  warning and leaves the chunk as nodata.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any
from urllib.parse import urlparse

from xterrafm import _compat
from xterrafm._imports import import_gate
from xterrafm.errors import AssetReadError
from xterrafm.io.upsample import read_source_fast

with import_gate():
    import numpy as np
    import rasterio.errors
    from odc.loader import RioDriver, RioReader

__all__ = ["AssetReadError", "RetryPolicy", "RetryingRioDriver"]

log = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently reads are retried.

    Parameters
    ----------
    attempts : int
        Total attempts per chunk read (1 = no retry).
    backoff_s : float
        Wait before the second attempt in seconds; doubles for each further attempt.
    max_backoff_s : float
        Upper bound of a single wait in seconds.
    gdal_http_max_retry : int
        ``GDAL_HTTP_MAX_RETRY``: GDAL's per-request retries of HTTP 429/5xx answers.
    gdal_http_retry_delay_s : float
        ``GDAL_HTTP_RETRY_DELAY`` in seconds.
    """

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    gdal_http_max_retry: int = 3
    gdal_http_retry_delay_s: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.gdal_http_retry_delay_s < 0:
            raise ValueError("RetryPolicy delays must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.max_backoff_s, self.backoff_s * (2.0**attempt))

    def gdal_options(self) -> dict[str, str]:
        """GDAL config options for HTTP retries (and no sidecar-file probing on open)."""
        return {
            "GDAL_HTTP_MAX_RETRY": str(int(self.gdal_http_max_retry)),
            "GDAL_HTTP_RETRY_DELAY": str(float(self.gdal_http_retry_delay_s)),
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        }


def coerce_retry(retry: RetryPolicy | int | None) -> RetryPolicy:
    """A :class:`RetryPolicy` from ``None`` (defaults), an int (attempts) or a policy."""
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, RetryPolicy):
        return retry
    if isinstance(retry, int) and not isinstance(retry, bool):
        return RetryPolicy(attempts=retry)
    raise TypeError(f"retry must be a RetryPolicy, an int (attempts) or None; got {retry!r}")


def _vsi_path(uri: str) -> str | None:
    """GDAL's virtual path for a remote ``uri`` (for ``CPL_VSIL_CURL_NON_CACHED``), else None."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        return "/vsicurl/" + uri
    prefixes = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "abfs": "/vsiaz/"}
    if scheme in prefixes:
        return prefixes[scheme] + uri.split("://", 1)[1]
    return None


def _is_missing_local_file(uri: str) -> bool:
    scheme = urlparse(uri).scheme.lower()
    if scheme not in ("", "file") or uri.startswith("/vsi"):
        return False
    path = uri[len("file://"):] if scheme == "file" else uri
    return not os.path.exists(path)


def _cached_failure(err: Exception) -> bool:
    """Whether GDAL remembers this failure: a failed look-up of the file itself (its size or
    existence, answered by a HEAD request) is cached by ``/vsicurl/``, and an open retried
    without defeating that cache fails at once, without a request. Failed range reads are not
    cached; their retries keep the ranges already read, so each attempt gets further."""
    text = str(err)
    return any(s in text for s in ("HTTP response code", "No such file", "does not exist"))


class RetryingRioReader(RioReader):
    """odc-loader reader that retries failed chunk reads (see module docstring)."""

    def __init__(self, src: Any, ctx: Any, policy: RetryPolicy) -> None:
        super().__init__(src, ctx)
        self._policy = policy

    def read(self, cfg: Any, dst_geobox: Any, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        strict = dataclasses.replace(cfg, fail_on_error=True)
        uri = self._src.uri
        policy = self._policy
        attempts = 1 if _is_missing_local_file(uri) else policy.attempts
        last: Exception | None = None
        fresh = False  # whether the next attempt must not trust GDAL's cached state of uri
        for attempt in range(attempts):
            env: dict[str, str] = {}
            vsi = _vsi_path(uri)
            if vsi is not None and (fresh or (attempt > 0 and attempt == attempts - 1)):
                env["CPL_VSIL_CURL_NON_CACHED"] = vsi
            try:
                with _compat.rio_env(**env):
                    fast = read_source_fast(self._src, strict, dst_geobox, dst=dst,
                                            selection=selection)
                    if fast is not None:
                        return fast
                    return _compat.rio_read(self._src, strict, dst_geobox, dst=dst,
                                            selection=selection)
            except rasterio.errors.RasterioError as e:
                last = e
                fresh = _cached_failure(e)
                if attempt + 1 < attempts:
                    wait = policy.delay(attempt)
                    log.info("retrying %s in %.2f s after: %s", uri, wait, e)
                    time.sleep(wait)
        msg = (f"failed to read {uri} (band {self._src.band}) after {attempts} attempt(s): "
               f"{type(last).__name__}: {last}")
        if cfg.fail_on_error:
            # no exception chaining: rasterio errors do not pickle with their causes, and the
            # error must cross process boundaries (distributed workers) as AssetReadError
            raise AssetReadError(msg) from None
        log.warning("%s; leaving these pixels as nodata (fill_failed=True)", msg)
        if dst is not None:
            return np.s_[0:0, 0:0], dst[0:0, 0:0]
        return np.s_[0:0, 0:0], np.ndarray((0, 0), dtype=cfg.dtype)


class RetryingRioDriver(RioDriver):
    """odc-loader rasterio driver whose readers retry with a :class:`RetryPolicy`.

    Pass an instance as ``driver=`` to ``odc.stac.load``. It is pickled into the dask graph, so
    it works on distributed workers.
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or RetryPolicy()

    def open(self, src: Any, ctx: Any) -> RetryingRioReader:
        return RetryingRioReader(src, ctx, self.policy)
