"""What workers do before and around the blocks: the model is preloaded once per worker, the
weights are re-hashed only when the file is not the one the client hashed, the allocator is
tuned under dask nannies, and a block's windows run in balanced batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from xterrafm.embedding import runtime  # noqa: E402
from xterrafm.embedding.plan import weights_stamp  # noqa: E402
from xterrafm.embedding.spec import ModelSpec  # noqa: E402
from xterrafm.store import embed_to_zarr  # noqa: E402
from xterrafm.weights import load_model  # noqa: E402


@pytest.fixture(scope="module")
def cube(make_cube):
    return make_cube(128, 128, chunks=64, n_dates=1)


@pytest.fixture
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def test_each_worker_preloads_once_and_trusts_the_unchanged_file(cube, tiny_weights, tmp_path,
                                                                 client):
    summary = embed_to_zarr(cube, tmp_path / "e.zarr", client=client, model="terrafm-tiny",
                            weights=tiny_weights, tile=64, progress=False)
    assert summary.complete
    # one preload per worker, blocks or not; a worker still loading when a tiny job ends
    # finishes in the background (its blocks went to the other worker)
    deadline = time.monotonic() + 60
    while True:
        stats = client.run(runtime.stats).values()
        if all(s.get("preloads", 0) and s.get("reader_warmups", 0) for s in stats) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [s.get("preloads", 0) for s in stats] == [1, 1]
    # the read kernels are loaded by a task of their own, beside the model build
    assert [s.get("reader_warmups", 0) for s in stats] == [1, 1]
    assert all(s.get("models_built", 0) == 1 for s in stats)
    assert all(s.get("weights_hashed", 0) == 0 for s in stats)  # stamp matched: no re-hash
    assert all(s.get("allocator_tuned", 0) == 1 for s in stats if s.get("blocks"))


def _has_worker_setup(dask_worker) -> bool:
    from xterrafm.embedding.workers import WorkerSetup

    return WorkerSetup.name in dask_worker.plugins


def test_planning_on_a_client_sets_the_workers_up(cube, tiny_weights, client):
    """Making the plan (a lazy embed, nothing computed) registers the worker setup and loads
    the read kernels on every worker, while this process hashes the weights."""
    assert not any(client.run(_has_worker_setup).values())
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64,
                             client=client)
    assert all(client.run(_has_worker_setup).values())
    deadline = time.monotonic() + 60
    while True:
        warmed = [s.get("reader_warmups", 0) for s in client.run(runtime.stats).values()]
        if all(warmed) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert warmed == [1, 1]
    # nothing of the graph ran: no model was built and no block embedded
    stats = client.run(runtime.stats).values()
    assert all(s.get("models_built", 0) == 0 and s.get("blocks", 0) == 0 for s in stats)
    assert emb.chunks is not None  # still lazy


def test_changed_file_is_hashed_and_refused(cube, tiny_weights, tmp_path, client):
    """A file whose stamp differs from the client's is hashed; other tensors fail loudly."""
    path = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, path)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=str(path), tile=64)
    # replace the file after the graph was built: other tensors, other stamp
    from xterrafm.weights import convert_weights

    convert_weights(load_model("terrafm-tiny", seed=5).state_dict(), path, overwrite=True)
    with pytest.raises(ValueError, match="sha256"):
        emb.compute(scheduler=client.get)
    assert any(s.get("weights_hashed", 0) for s in client.run(runtime.stats).values())


def test_load_model_takes_a_known_hash(tiny_weights):
    real = load_model("terrafm-tiny", tiny_weights).weights_sha256
    assert load_model("terrafm-tiny", tiny_weights, sha256="ab" * 32).weights_sha256 == "ab" * 32
    assert load_model("terrafm-tiny", tiny_weights).weights_sha256 == real
    stamp = weights_stamp(tiny_weights)
    assert stamp == (os.stat(tiny_weights).st_size, os.stat(tiny_weights).st_mtime_ns)
    assert weights_stamp(None) is None and weights_stamp("hf") is None


def test_preload_in_this_process_builds_the_spec_model(tiny_weights):
    runtime.clear_cache()
    spec = ModelSpec(model="terrafm-tiny", weights=tiny_weights, weights_sha256="",
                     modality="s2_l2a", weights_stamp=weights_stamp(tiny_weights))
    assert runtime.preload(spec) == os.getpid()
    assert runtime.stats()["models_built"] == 1
    model, _ = runtime.get_model(spec)
    assert runtime.stats()["models_built"] == 1  # cached
    # the patch embedding of the spec's modality is folded with the build, not in a block
    assert set(model.patch_embed._folds._entries) == {"values:s2_l2a", "head"}
    runtime.clear_cache()


_ALLOCATOR_PROBE = """
import json, os
from xterrafm.embedding import runtime
print(json.dumps({"tuned": runtime.tune_allocator()}))
"""


@pytest.mark.parametrize("env,want", [({"MALLOC_TRIM_THRESHOLD_": "65536"}, True), ({}, False)])
def test_allocator_tuned_only_under_a_small_trim_threshold(env, want):
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], env={**base, **env},
                         capture_output=True, text=True, check=True).stdout
    assert f'"tuned": {str(want).lower()}' in out


def test_windows_run_in_balanced_batches(make_cube, tiny_weights):
    """5 x 5 windows with batch_size 8: 4 forward passes of 7, 6, 6, 6 (no lone window)."""
    runtime.clear_cache()
    cube = make_cube(320, 320, chunks=320, n_dates=1)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, batch_size=8)
    seen = []
    orig = runtime.record

    def spy(**counts):
        if "forward_calls" in counts:
            seen.append(counts["windows"])
        orig(**counts)

    runtime.record = spy
    try:
        got = emb.compute(scheduler="sync")
    finally:
        runtime.record = orig
    assert sorted(seen, reverse=True) == [7, 6, 6, 6]
    assert np.isfinite(got.values).all()


def test_local_preload_thread_never_outlives_the_job(cube, tiny_weights, tmp_path):
    """On local schedulers the preload runs in a thread of this process; it is joined before
    embed_to_zarr returns, also when nothing is left to do (a thread still inside torch at
    interpreter exit aborts the process)."""
    import threading

    import dask

    with dask.config.set(scheduler="threads"):
        for _ in range(2):  # the second call resumes a complete store: no block to run
            summary = embed_to_zarr(cube, tmp_path / "e.zarr", model="terrafm-tiny",
                                    weights=tiny_weights, tile=64, progress=False)
            assert summary.complete
            assert not [t for t in threading.enumerate() if t.name == "xterrafm-preload"]
    assert summary.counts.found.blocks == summary.counts.blocks_total
