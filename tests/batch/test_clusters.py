"""``--cluster ADDRESS`` uses a running scheduler and leaves it running."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from xterrafm.batch.clusters import ClusterError, GatewayOptions, gateway_cluster_options
from xterrafm.cli import EXIT_OK, main


def test_running_scheduler_is_used_and_left_running(batch_scene, reference_store: Path,
                                                    tiny_job_args: list[str],
                                                    tmp_path: Path) -> None:
    out = tmp_path / "emb.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        code = main(["embed", str(batch_scene.item_collections["s2_l2a"]), "--out", str(out),
                     "--cluster", cluster.scheduler_address, "-q", *tiny_job_args])
        assert code == EXIT_OK
        with Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 1  # still up, still ours
            # the worker built the model: the job ran there, not in this process
            stats = client.run(lambda: __import__("xterrafm.embedding.runtime",
                                                  fromlist=["stats"]).stats())
            assert any(s["cached_models"] for s in stats.values())
    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(ds["embeddings"].values,
                                  xr.open_zarr(reference_store, consolidated=False)
                                  ["embeddings"].values)


def test_gateway_options_memory_in_gib_and_unknown_options_named() -> None:
    from dask_gateway.options import Float, Integer, Options

    full = Options(Integer("worker_cores", 1, min=1, max=8), Float("worker_memory", 2.0),
                   Integer("gpu", 0, min=0, max=1))
    opts = gateway_cluster_options(full, GatewayOptions(worker_cores=4, worker_memory="6GiB",
                                                        gpu=1))
    assert dict(opts) == {"worker_cores": 4, "worker_memory": 6.0, "gpu": 1}
    opts = gateway_cluster_options(Options(Float("worker_memory", 2.0)),
                                   GatewayOptions(worker_memory="3"))
    assert opts["worker_memory"] == 3.0
    with pytest.raises(ClusterError, match="gpu.*worker_cores"):
        gateway_cluster_options(Options(Integer("worker_cores", 1)), GatewayOptions(gpu=1))
    with pytest.raises(ClusterError, match="rejected gpu=4"):
        gateway_cluster_options(full, GatewayOptions(gpu=4))


def test_local_cluster_fails_tasks_instead_of_waiting_forever_without_workers() -> None:
    import dask
    from distributed.scheduler import NoValidWorkerError, NoWorkerError

    from xterrafm.batch.clusters import LOCAL_NO_WORKERS_TIMEOUT, LocalOptions, open_cluster

    small = LocalOptions(n_workers=1, threads_per_worker=1)
    with open_cluster("local", local=small) as running:
        assert running.cluster.scheduler.no_workers_timeout == \
            dask.utils.parse_timedelta(LOCAL_NO_WORKERS_TIMEOUT)
    # a user's setting wins; with every worker gone, a task fails once it is over
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "1s"}), \
            open_cluster("local", local=small) as running:
        client = running.client
        assert running.cluster.scheduler.no_workers_timeout == 1.0
        client.retire_workers(list(client.scheduler_info()["workers"]), close_workers=True)
        future = client.submit(sum, [1, 2])
        # queued (root-task queuing on) or waiting for a worker (off, our default): either way
        # the scheduler gives up after the timeout
        with pytest.raises((NoWorkerError, NoValidWorkerError),
                           match="without any running workers|waiting for a valid worker"):
            future.result(timeout=60)


def test_local_cluster_turns_root_task_queuing_off_unless_the_user_set_it() -> None:
    import math

    import dask

    from xterrafm.batch.clusters import LocalOptions, open_cluster

    def queued_while_running(running) -> int:
        """Root tasks (20 independent ones on 1 thread) left in the scheduler's queue once the
        first of them runs."""
        futures = running.client.map(time.sleep, [0.1] * 20, pure=False)
        deadline = time.monotonic() + 30
        scheduler = running.cluster.scheduler
        while not any(ts.state == "processing" for ts in scheduler.tasks.values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = len(scheduler.queued)
        running.client.gather(futures)
        return queued

    small = LocalOptions(n_workers=1, threads_per_worker=1)
    with open_cluster("local", local=small) as running:
        assert math.isinf(running.cluster.scheduler.WORKER_SATURATION)
        assert queued_while_running(running) == 0  # all sent to the worker at once
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.1}), \
            open_cluster("local", local=small) as running:  # 1.1 is distributed's own: ours wins
        assert math.isinf(running.cluster.scheduler.WORKER_SATURATION)
    with dask.config.set({"distributed.scheduler.worker-saturation": 2.0}), \
            open_cluster("local", local=small) as running:
        assert running.cluster.scheduler.WORKER_SATURATION == 2.0
        assert queued_while_running(running) > 0  # the user's queue: tasks wait in the scheduler
