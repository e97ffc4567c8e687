"""Computing a store's blocks with a bounded number in flight, on a client or locally.

At most :func:`default_wave_size` blocks (write tasks, one per block,
:mod:`xterrafm.store.write`) are in flight, so the graph and worker memory stay bounded however
large the store. On a distributed client the bound is a rolling window: a block is submitted
each time one finishes, so no thread waits for the slowest block of a group before the next
blocks are read. On dask's local schedulers blocks run in consecutive waves of that size, on a
pool of this call's own that is drained before a failure is raised: no block of a failed wave
is still being written when the caller counts what is on disk. Either way a hook runs after
each ``wave_size`` finished blocks (and after the last block).
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

__all__ = ["compute_blocks", "default_wave_size", "waves"]


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


def compute_blocks(parts: list, done: Callable[[Any], None], *, wave_size: int | None,
                   on_wave: Callable[[], None] | None = None,
                   stop_check: Callable[[], None] | None = None, client: Any = None,
                   tick: Callable[[], None] | None = None, task_prefix: str = "",
                   no_worker_timeout: float) -> None:
    """Compute the dask collections ``parts`` (one per block), calling ``done(result)`` for each.

    Parameters
    ----------
    parts : list of dask collections
        One per block, in the order they should start.
    done : callable
        Called with each block's result: as it finishes on a client, after its wave on local
        schedulers.
    wave_size : int or None
        At most this many blocks in flight (None or 0: all at once).
    on_wave : callable, optional
        Called after every ``wave_size`` finished blocks and after the last one (checkpoints,
        logging, stopping by raising: then no further block is started).
    stop_check : callable, optional
        With a client: called while waiting for blocks (about every 20 ms), to raise a stop
        request; no further block is started then.
    client : distributed.Client, optional
        Compute there, in a rolling window, earlier blocks at higher priority; else on dask's
        configured local scheduler, in waves.
    tick : callable, optional
        Local schedulers: called when a task whose name starts with ``task_prefix`` ends (a
        progress bar's update).
    task_prefix : str
        Name prefix of the write tasks.
    no_worker_timeout : float
        With a client: seconds without any worker before failing.
    """
    size = wave_size or len(parts)
    with keep_annotations():
        if client is not None:
            _on_client(client, parts, done, size, on_wave, stop_check, no_worker_timeout)
            return
        for wave in waves(parts, size):
            for result in _local(wave, tick, task_prefix):
                done(result)
            if on_wave is not None:
                on_wave()


def _on_client(client: Any, parts: list, done: Callable[[Any], None], size: int,
               on_wave: Callable[[], None] | None, stop_check: Callable[[], None] | None,
               no_worker_timeout: float) -> None:
    # one submission per block, earlier blocks at higher priority: the scheduler reads block by
    # block, and the first forward passes start after one block's reads
    submitted: list = []
    finished = 0

    def submit(i: int) -> Any:
        fut = client.compute(parts[i], priority=len(parts) - i)
        submitted.append(fut)
        return fut

    def on_result(result: Any) -> None:
        nonlocal finished
        done(result)
        finished += 1
        if on_wave is not None and (finished % size == 0 or finished == len(parts)):
            on_wave()

    first = [submit(i) for i in range(min(size, len(parts)))]
    try:
        gather_with_watch(client, first, on_result,
                          more=(submit(i) for i in range(len(first), len(parts))),
                          check=stop_check, no_worker_timeout=no_worker_timeout)
    finally:
        client.cancel([f for f in submitted if not f.done()])


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
