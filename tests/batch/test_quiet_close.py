"""Closing the LocalCluster of a job logs no worker traceback, even with a heartbeat in flight.

distributed's ``Worker.close`` closes the worker's connections while a heartbeat may still wait
for the scheduler's reply; that heartbeat then logs ``Failed to communicate with scheduler
during heartbeat`` with a traceback (seen once at the end of the README's main job). Here every
heartbeat reply is delayed, so that one is in flight whenever the job's cluster closes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("distributed")

from xterrafm.batch.clusters import LocalOptions, open_cluster  # noqa: E402


def test_closing_with_a_heartbeat_in_flight_logs_no_traceback(capfd):
    with open_cluster("local", local=LocalOptions(n_workers=1, threads_per_worker=1)) as rc:
        scheduler = rc.cluster.scheduler
        reply = scheduler.handlers["heartbeat_worker"]

        async def slow_reply(*args, **kwargs):
            await asyncio.sleep(0.4)  # the scheduler answers heartbeats late
            return reply(*args, **kwargs)

        scheduler.handlers["heartbeat_worker"] = slow_reply
        assert rc.client.submit(sum, [1, 2]).result(timeout=30) == 3
        time.sleep(1.0)  # a heartbeat (0.5 s apart, each answered 0.4 s late) is in flight
    err = capfd.readouterr().err
    # (not any "Traceback": an earlier in-process CLI test may leave a log handler on a
    # closed stream, whose "Logging error" report is not about closing clusters)
    assert "during heartbeat" not in err
    assert "CommClosedError" not in err
