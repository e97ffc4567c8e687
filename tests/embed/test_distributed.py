"""Schedulers: a LocalCluster of processes, any Client, and GPU resource requests that survive
graph optimisation (model tasks run only on workers that declare a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

distributed = pytest.importorskip("distributed")

from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster  # noqa: E402

from xterrafm.embedding import compute, keep_annotations, runtime  # noqa: E402
from xterrafm.store import embed_to_zarr  # noqa: E402


@pytest.fixture(scope="module")
def cube(make_cube):
    return make_cube(160, 200, chunks=64, nan_box=(120, 160, 0, 50))


@pytest.fixture(scope="module")
def reference(cube, tiny_weights):
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, stride=48)
    return emb.compute(scheduler="threads")


@pytest.fixture(scope="module")
def local_client():
    """A small LocalCluster of processes (2 workers x 1 thread) without GPU resources."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def _worker_stats(client):
    return client.run(runtime.stats)


def test_local_cluster_of_processes(cube, reference, tiny_weights, tmp_path, local_client):
    client = local_client
    client.run(runtime.clear_cache)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, stride=48,
                             block_cells=2, client=client)
    (got,) = compute(emb, client=client, progress=False)
    np.testing.assert_allclose(got.values, reference.values, atol=1e-5, equal_nan=True)
    summary = embed_to_zarr(cube, tmp_path / "e.zarr", client=client, model="terrafm-tiny",
                            weights=tiny_weights, tile=64, stride=48, block_cells=2,
                            progress=False)
    n_blocks = int(np.prod([len(c) for c in emb.data.chunks]))
    assert n_blocks == 2 * 2 * 2  # dates x (3 window rows / 2) x (4 window columns / 2)
    assert summary.complete and summary.counts.written.blocks == n_blocks
    stats = _worker_stats(client)
    # one model per worker process, however many blocks it ran; threads set once
    assert all(s.get("models_built", 0) <= 1 for s in stats.values())
    assert sum(s.get("blocks", 0) for s in stats.values()) == 2 * n_blocks
    assert all(s["torch_threads"] == 1 for s in stats.values() if s.get("blocks"))
    back = xr.open_zarr(tmp_path / "e.zarr", decode_coords="all")["embeddings"]
    np.testing.assert_allclose(back.values, reference.values, atol=1e-5, equal_nan=True)


def _gpu_cluster() -> SpecCluster:
    return SpecCluster(
        workers={"gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
                 "cpu": {"cls": Nanny, "options": {"nthreads": 1}}},
        scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
    )


def test_model_tasks_run_only_on_gpu_workers(cube, reference, tiny_weights, tmp_path):
    with _gpu_cluster() as cluster, Client(cluster) as client:
        gpu_addr = next(a for a, w in client.scheduler_info()["workers"].items()
                        if w["resources"].get("GPU"))
        # device="cpu": the fake GPU resource only steers scheduling here
        emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, stride=48,
                                 block_cells=1, device="cpu")
        assert emb.data.dask.layers[emb.data.name].annotations == {"resources": {"GPU": 1}}
        (got,) = compute(emb + 0, client=client, progress=False)  # optimisation + fusion on
        np.testing.assert_allclose(got.values, reference.values, atol=1e-5, equal_nan=True)
        with keep_annotations():  # a user's own compute keeps them too, inside this block
            plain = client.compute(emb.mean("embedding")).result()
        assert np.isfinite(plain.values).any()
        summary = embed_to_zarr(cube, tmp_path / "g.zarr", client=client, model="terrafm-tiny",
                                weights=tiny_weights, tile=64, stride=48, block_cells=1,
                                device="cpu", progress=False)
        assert summary.complete
        stats = _worker_stats(client)
        n_blocks = int(np.prod([len(c) for c in emb.data.chunks]))
        assert stats[gpu_addr].get("blocks", 0) == 3 * n_blocks
        others = [s for a, s in stats.items() if a != gpu_addr]
        assert others and all(s.get("blocks", 0) == 0 and not s["cached_models"] for s in others)


def test_no_gpu_resource_no_annotation(cube, tiny_weights, local_client):
    client = local_client
    client.run(runtime.clear_cache)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64,
                             block_cells=1, client=client)
    assert not emb.data.dask.layers[emb.data.name].annotations
    (got,) = compute(emb, client=client, progress=False)
    assert np.isfinite(got.values).any()
    stats = _worker_stats(client)
    assert sum(s.get("blocks", 0) for s in stats.values()) == 2 * 3 * 4
