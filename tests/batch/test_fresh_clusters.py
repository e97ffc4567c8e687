"""The first job on fresh worker processes starts and finishes, cluster after cluster.

Each LocalCluster starts new worker processes, in which nothing of xterrafm, odc, rasterio or
torch is imported yet: the worker's event loop unpickles the first tasks (a reader driver, the
block functions) while its executor threads build the model. With import-order races, some of
these first jobs lost their only worker.
"""

from __future__ import annotations

import pytest

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_first_job_on_fresh_workers(batch_scene, tmp_path):
    from xterrafm.io.stac import load_stac
    from xterrafm.store import embed_to_zarr

    for run in range(3):
        cube = load_stac(batch_scene.item_collections["s2_l2a"], modality="s2_l2a",
                         chunks={"y": 64, "x": 64})
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            summary = embed_to_zarr(cube, tmp_path / f"run{run}.zarr", client=client,
                                    model="terrafm-tiny", tile=32,
                                    batch_size=16, progress=False, no_worker_timeout=30)
            assert summary.complete, run
            assert len(client.scheduler_info()["workers"]) == 1  # the worker survived
