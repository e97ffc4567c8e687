"""A job never waits forever: when its workers die and none replaces them, it fails in bounded
time with the workers' own error, on a cluster the user started as on the one a job starts."""

from __future__ import annotations

import time

import distributed
import pytest

from tests.helpers import poison
from xterrafm.errors import WorkersLostError
from xterrafm.store import embed_to_zarr

KW = dict(model="terrafm-tiny", tile=64, block_cells=1, progress=False)


def _poisoned(cube):
    data = cube.data.map_blocks(poison.passthrough, marker=poison.Poison(), dtype=cube.dtype)
    return cube.copy(data=data)


@pytest.mark.parametrize("how", ["client-of-cluster", "scheduler-address"])
def test_a_worker_that_dies_ends_the_job_with_its_error(make_cube, tiny_weights, tmp_path, how):
    cube = _poisoned(make_cube(128, 128, modality="s2_l2a", n_dates=1))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                  env={poison.ENV: "1"}) as cluster:
        target = cluster if how == "client-of-cluster" else cluster.scheduler_address
        with distributed.Client(target, set_as_default=False) as client:
            t0 = time.monotonic()
            with pytest.raises(WorkersLostError) as err:
                embed_to_zarr(cube, tmp_path / "e.zarr", client=client, weights=tiny_weights,
                              no_worker_timeout=3, **KW)
            waited = time.monotonic() - t0
    message = str(err.value)
    assert "ImportError" in message and "partially initialized module (injected)" in message
    assert "no worker for 3 s" in message
    assert waited < 120  # bounded: the worker died at once, then 3 s without one
