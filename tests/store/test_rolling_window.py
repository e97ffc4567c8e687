"""Blocks on a distributed client run in a rolling window: never more than ``wave_size`` in
flight, and no block waits for the slowest block of its group (no barrier between waves)."""

from __future__ import annotations

import time

import pytest

distributed = pytest.importorskip("distributed")

from distributed import Client, Event, LocalCluster, Queue  # noqa: E402

from xterrafm.store.waves import compute_blocks  # noqa: E402

N_PARTS = 7
WAVE = 2
EVENT = "xterrafm-test-release-first-block"
STARTED = "xterrafm-test-started-blocks"


def _block(i: int, hold_s: float) -> tuple[int, float, float, bool]:
    """Block ``i`` of the test: block 0 waits (bounded) until the client releases it, the
    others sleep ``hold_s``; returns (i, start, stop, whether block 0 was released)."""
    start = time.time()
    Queue(STARTED).put(i)
    released = True
    if i == 0:
        released = Event(EVENT).wait(timeout=60)
    else:
        time.sleep(hold_s)
    return i, start, time.time(), released


@pytest.fixture(scope="module")
def client():
    """Fresh worker processes with more threads than the window, so that only the window can
    bound how many blocks run at once."""
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def _parts(hold_s: float) -> list:
    import dask

    return [dask.delayed(_block, pure=False)(i, hold_s) for i in range(N_PARTS)]


def test_no_block_waits_for_the_slowest_of_its_wave(client):
    event = Event(EVENT, client=client)
    event.clear()
    results: list = []
    hooks: list[int] = []

    def done(result) -> None:
        results.append(result)
        if len(results) == N_PARTS - 1:  # every block but the first has finished
            event.set()

    compute_blocks(_parts(0.05), done, wave_size=WAVE, on_wave=lambda: hooks.append(len(results)),
                   client=client, no_worker_timeout=30)
    order = [r[0] for r in results]
    # with a barrier after each wave, blocks 2.. could not start before block 0 ended, and
    # block 0 would end only when its wait timed out (released False)
    assert order[-1] == 0 and sorted(order) == list(range(N_PARTS))
    assert all(r[3] for r in results)
    # the hook ticks after every WAVE finished blocks, and after the last one
    assert hooks == [2, 4, 6, 7]


def test_at_most_wave_size_blocks_run_at_once(client):
    results: list = []
    Event(EVENT, client=client).set()  # block 0 does not wait here
    compute_blocks(_parts(0.3), results.append, wave_size=WAVE, client=client,
                   no_worker_timeout=30)
    assert sorted(r[0] for r in results) == list(range(N_PARTS))
    # a block is submitted only after another has returned: never more than WAVE overlap,
    # although the worker has 4 threads
    edges = sorted([(r[1], 1) for r in results] + [(r[2], -1) for r in results],
                   key=lambda e: (e[0], e[1]))
    running, most = 0, 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most <= WAVE
    # and the window is used: some blocks did run side by side
    assert most == WAVE


def test_a_hook_that_raises_starts_no_further_block(client):
    Event(EVENT, client=client).set()
    started = Queue(STARTED, client=client)
    while started.qsize():
        started.get()
    results: list = []

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_blocks(_parts(0.05), results.append, wave_size=WAVE, on_wave=stop,
                       client=client, no_worker_timeout=30)
    assert len(results) == WAVE
    time.sleep(1.0)  # a block submitted after the hook would have started by now
    seen = {started.get(timeout=5) for _ in range(started.qsize())}
    # blocks 0 and 1, and at most the one that replaced the first to finish
    assert {0, 1} <= seen <= {0, 1, 2}


def test_a_stop_request_ends_the_wait_while_no_block_finishes(client):
    """A stop request whose own raise was lost (a signal handler's exception swallowed in a gc
    callback) still ends the call while every block is stuck, e.g. on workers that the same
    Ctrl-C killed: the wait itself checks it."""
    import signal
    import threading

    from xterrafm.batch.interrupts import StopRequests

    event = Event(EVENT, client=client)
    event.clear()  # block 0 is held until the end of the test
    stop = StopRequests()
    results: list = []
    timer = threading.Timer(0.5, lambda: setattr(stop, "signum", signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            compute_blocks([_parts(0.05)[0]], results.append, wave_size=WAVE,
                           stop_check=stop.check, client=client, no_worker_timeout=30)
    finally:
        timer.cancel()
        event.set()
    assert results == []  # it returned while the block was still held
