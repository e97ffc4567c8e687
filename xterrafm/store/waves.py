"""Computing a store's blocks in waves, on a distributed client or on dask's local schedulers.

A wave is a list of write tasks (one per block, :mod:`xterrafm.store.write`); at most
:func:`default_wave_size` are in flight, so the graph and worker memory stay bounded however
large the store. Results are handed to a callback as blocks finish (block by block on a
client, after the wave on local schedulers, where a progress callback ticks per block). On
dask's threaded scheduler the wave runs on a pool of this call's own, which is drained before
a failure is raised: no block of a failed wave is still being written when the caller counts
what is on disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.embedding.scheduling import keep_annotations
from xterrafm.embedding.workers import gather_with_watch

with import_gate():
    import dask
    import dask.threaded

__all__ = ["compute_wave", "default_wave_size", "waves"]


def default_wave_size(client: Any = None) -> int:
    """Blocks per wave: 4 per dask thread, at least 8.

    Enough to keep every thread busy while the next blocks are read, and few enough that the
    scheduler does not read far ahead (worker memory would then grow with the scene).
    Threads are those of the client's workers, else dask's ``num_workers`` setting, else the
    cores of this machine.
    """
    if client is not None:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    else:
        threads = _local_threads()
    return max(8, 4 * threads)


def _local_threads() -> int:
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def waves(items: list, size: int | None) -> Iterable[list]:
    """``items`` in consecutive lists of at most ``size`` (all at once for None or 0)."""
    if not size or size >= len(items):
        if items:
            yield items
        return
    for i in range(0, len(items), size):
        yield items[i:i + size]


def compute_wave(parts: list, done: Callable[[Any], None], *, client: Any = None,
                 tick: Callable[[], None] | None = None, task_prefix: str = "",
                 no_worker_timeout: float) -> None:
    """Compute the dask collections ``parts``, calling ``done(result)`` for each.

    Parameters
    ----------
    parts : list of dask collections
        One per block.
    done : callable
        Called with each block's result: as it finishes on a client, after the wave on local
        schedulers.
    client : distributed.Client, optional
        Compute there (one submission per block, earlier blocks first); else on dask's
        configured local scheduler.
    tick : callable, optional
        Local schedulers: called when a task whose name starts with ``task_prefix`` ends (a
        progress bar's update).
    task_prefix : str
        Name prefix of the write tasks.
    no_worker_timeout : float
        With a client: seconds without any worker before failing.
    """
    with keep_annotations():
        if client is not None:
            _on_client(client, parts, done, no_worker_timeout)
        else:
            for result in _local(parts, tick, task_prefix):
                done(result)


def _on_client(client: Any, parts: list, done: Callable[[Any], None],
               no_worker_timeout: float) -> None:
    # one submission per block, earlier blocks first: the scheduler then reads block by block,
    # and the first forward passes start after one block's reads instead of the whole wave's
    futures = [client.compute(p, priority=len(parts) - i) for i, p in enumerate(parts)]
    try:
        gather_with_watch(client, futures, done, no_worker_timeout=no_worker_timeout)
    finally:
        client.cancel([f for f in futures if not f.done()])


def _local(parts: list, tick: Callable[[], None] | None, prefix: str) -> tuple:
    callback = _TaskTick(tick, prefix)
    if dask.base.get_scheduler() is not dask.threaded.get:
        with callback:  # synchronous or process schedulers: nothing outlives the call
            return dask.compute(*parts)
    pool = ThreadPoolExecutor(_local_threads(), thread_name_prefix="xterrafm-store")
    try:
        with callback:
            return dask.compute(*parts, scheduler="threads", pool=pool)
    finally:
        # a failed wave returns while other blocks still run: wait for them (and start no
        # queued one), so that the blocks written by this call are all on disk when it returns
        pool.shutdown(wait=True, cancel_futures=True)


class _TaskTick(dask.callbacks.Callback):
    """Call ``tick()`` when a write task of this store finishes (local schedulers)."""

    def __init__(self, tick: Callable[[], None] | None, prefix: str) -> None:
        super().__init__()
        self._tick, self._prefix = tick, prefix

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if (self._tick is not None and self._prefix and isinstance(name, str)
                and name.startswith(self._prefix)):
            self._tick()
