"""``precision="auto"`` is resolved once per job, from the processes that run the model, and the
resolved value is what runs, what the attrs say and what the store fingerprint holds.

The CPU's answer is set through the documented override (``XTERRAFM_CPU_BF16``) in the process
that reads it, so these tests do not depend on the CPU they run on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr

from xterrafm.embedding import runtime
from xterrafm.embedding.api import plan_embedding
from xterrafm.embedding.settings import EmbedSettings
from xterrafm.errors import StoreMismatchError, XterrafmWarning
from xterrafm.models.cpu_bf16 import ENV_OVERRIDE
from xterrafm.store import embed_to_zarr

KW = {"model": "terrafm-tiny", "tile": 64}


@pytest.fixture(scope="module")
def cube(make_cube):
    return make_cube(64, 128, modality="s2_l2a", n_dates=1, chunks=64)


def _plan(cube, weights, client=None, **options):
    _, plan = plan_embedding(cube, EmbedSettings(weights=weights, **KW, **options),
                             client=client)
    return plan


@pytest.mark.parametrize(("native", "want"), [("1", "bf16"), ("0", "fp32")])
def test_auto_follows_this_process_without_a_client(cube, tiny_weights, monkeypatch, native,
                                                    want):
    monkeypatch.setenv(ENV_OVERRIDE, native)
    plan = _plan(cube, tiny_weights)
    assert plan.spec.precision == want  # the tasks carry the resolved precision
    assert plan.attrs["precision"] == want and plan.fingerprint["precision"] == want
    assert plan.attrs["precision_requested"] == "auto"
    assert ENV_OVERRIDE in plan.attrs["precision_choice"]


def test_a_forced_precision_wins_over_the_detection(cube, tiny_weights, monkeypatch):
    monkeypatch.setenv(ENV_OVERRIDE, "1")
    plan = _plan(cube, tiny_weights, precision="fp32")
    assert plan.spec.precision == plan.fingerprint["precision"] == "fp32"
    monkeypatch.setenv(ENV_OVERRIDE, "0")
    plan = _plan(cube, tiny_weights, precision="bfloat16")
    assert plan.spec.precision == plan.attrs["precision"] == "bf16"
    assert plan.attrs["precision_choice"] == "requested"


def test_bf16_runs_where_resolved_and_agrees_with_fp32(cube, tiny_weights, monkeypatch):
    runtime.clear_cache()
    monkeypatch.setenv(ENV_OVERRIDE, "1")
    bf16 = cube.terrafm.embed(weights=tiny_weights, **KW)
    assert bf16.attrs["precision"] == "bf16"
    got = bf16.compute(scheduler="threads").values
    assert [k[-1] for k in runtime.stats()["cached_models"]] == ["bf16"]
    ref = cube.terrafm.embed(weights=tiny_weights, precision="fp32", **KW)
    want = ref.compute(scheduler="threads").values
    a, b = got[0].reshape(got.shape[1], -1).T, want[0].reshape(want.shape[1], -1).T
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99  # bf16 rounding, not another computation
    assert not np.array_equal(got, want)  # and it did run in bf16


def test_the_store_fingerprint_holds_the_resolved_precision(cube, tiny_weights, monkeypatch,
                                                           tmp_path):
    store = tmp_path / "bf16.zarr"
    monkeypatch.setenv(ENV_OVERRIDE, "1")
    summary = embed_to_zarr(cube, store, weights=tiny_weights, progress=False, **KW)
    assert summary.complete
    fp = json.loads(zarr.open_group(str(store)).attrs["xterrafm_fingerprint"])
    assert fp["precision"] == "bf16"
    assert xr.open_zarr(store)["embeddings"].attrs["precision"] == "bf16"
    with pytest.raises(StoreMismatchError, match="precision"):
        embed_to_zarr(cube, store, weights=tiny_weights, progress=False, precision="fp32", **KW)
    again = embed_to_zarr(cube, store, weights=tiny_weights, progress=False, **KW)
    assert again.state == "resume" and again.counts.written.blocks == 0
    # the same "auto" on a CPU without native bf16 is another precision: refused, not mixed
    monkeypatch.setenv(ENV_OVERRIDE, "0")
    with pytest.raises(StoreMismatchError, match="precision"):
        embed_to_zarr(cube, store, weights=tiny_weights, progress=False, **KW)


def test_a_fused_job_carries_the_resolved_precision(cube, make_cube, tiny_weights, monkeypatch):
    import xterrafm

    s1 = make_cube(64, 128, modality="s1", n_dates=1, chunks=64, seed=1)
    s1 = s1.assign_coords(time=cube.time.values)
    monkeypatch.setenv(ENV_OVERRIDE, "1")
    fused = xterrafm.embed({"s2_l2a": cube, "s1": s1}, weights=tiny_weights, **KW)
    assert fused.attrs["precision"] == "bf16" and fused.attrs["precision_requested"] == "auto"
    monkeypatch.setenv(ENV_OVERRIDE, "0")
    ref = xterrafm.embed({"s2_l2a": cube, "s1": s1}, weights=tiny_weights, **KW)
    assert ref.attrs["precision"] == "fp32"
    runtime.clear_cache()
    got, want = fused.compute(scheduler="threads").values, ref.compute(scheduler="threads").values
    assert not np.array_equal(got, want)  # the fused tasks ran in bf16
    a, b = got[0].reshape(got.shape[1], -1).T, want[0].reshape(want.shape[1], -1).T
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


@pytest.fixture(scope="module")
def mixed_cluster():
    """Two single-thread workers: one that reports native bf16 (and a GPU resource), one not."""
    distributed = pytest.importorskip("distributed")
    from distributed import Client, Nanny, Scheduler, SpecCluster

    spec = {"bf16": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1},
                                               "env": {ENV_OVERRIDE: "1"}}},
            "fp32": {"cls": Nanny, "options": {"nthreads": 1, "env": {ENV_OVERRIDE: "0"}}}}
    with SpecCluster(workers=spec, scheduler={"cls": Scheduler,
                                              "options": {"dashboard_address": ":0"}}) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        assert distributed  # the module is importable on the workers too
        yield client


def test_a_mixed_cluster_runs_fp32_and_says_so(cube, tiny_weights, mixed_cluster, monkeypatch):
    monkeypatch.setenv(ENV_OVERRIDE, "1")  # the client's own CPU does not count
    with pytest.warns(XterrafmWarning, match="resolve it differently"):
        plan = _plan(cube, tiny_weights, client=mixed_cluster, resources=None, device="cpu")
    assert plan.spec.precision == plan.fingerprint["precision"] == "fp32"
    assert "mixed" in plan.attrs["precision_choice"]


def test_only_the_workers_that_run_the_model_are_asked(cube, tiny_weights, mixed_cluster,
                                                      monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_OVERRIDE, "0")
    client = mixed_cluster
    client.run(runtime.clear_cache)
    # resources="auto": model tasks go to the worker with the GPU resource, which reports bf16
    plan = _plan(cube, tiny_weights, client=client, device="cpu")
    assert plan.resources == {"GPU": 1} and plan.spec.precision == "bf16"
    summary = embed_to_zarr(cube, tmp_path / "gpu.zarr", client=client, weights=tiny_weights,
                            device="cpu", progress=False, **KW)
    assert summary.complete
    stats = client.run(runtime.stats)
    built = sorted(k[-1] for s in stats.values() for k in s["cached_models"])
    assert built == ["bf16"]

