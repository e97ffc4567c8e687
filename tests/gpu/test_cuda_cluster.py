"""GPU resource annotations on a real one-GPU LocalCluster: the model tasks ask for the GPU,
the worker builds the model on CUDA in bf16, and the results agree with the CPU's fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

pytestmark = pytest.mark.requires_cuda


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity along axis 1 (the embedding) of two (T, D, y, x) arrays."""
    num = (a * b).sum(axis=1)
    return num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_model_tasks_ask_for_the_gpu_and_run_there(target, make_s2_cube, tmp_path):
    from distributed import Client, LocalCluster

    from xterrafm.embedding import compute, embed, runtime
    from xterrafm.embedding.scheduling import gpu_resources
    from xterrafm.store import embed_to_zarr

    tile = target.tile
    cube = make_s2_cube(2 * tile, n_dates=1, chunks=tile)
    # the client's CPU reference, fp32, local scheduler
    reference = embed(cube, model=target.model, tile=tile, device="cpu", precision="fp32",
                      resources=None).compute(scheduler="sync")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      resources={"GPU": 1}, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        assert gpu_resources("auto", client) == {"GPU": 1}
        on_worker = client.run(torch.cuda.is_available)
        assert list(on_worker.values()) == [target.device == "cuda"]
        emb = embed(cube, model=target.model, tile=tile, block_cells=1, client=client)
        assert emb.data.dask.layers[emb.data.name].annotations == {"resources": {"GPU": 1}}
        (got,) = compute(emb, client=client, progress=False)
        assert got.shape == reference.shape and np.isfinite(got.values).all()
        assert _cosines(got.values, reference.values).min() >= 0.999
        summary = embed_to_zarr(cube, tmp_path / "e.zarr", client=client, model=target.model,
                                tile=tile, block_cells=1, progress=False)
        assert summary.complete
        back = xr.open_zarr(tmp_path / "e.zarr", decode_coords="all")["embeddings"]
        np.testing.assert_allclose(back.values, got.values, rtol=0, atol=1e-6)
        (stats,) = client.run(runtime.stats).values()
    assert stats["blocks"] == 2 * 4  # two computes of the 2 x 2 single-window blocks
    assert stats["models_built"] == 1  # one model for the worker, built by its preload
    assert [target.device, target.precision] == stats["cached_models"][0][-2:]
