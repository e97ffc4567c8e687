"""weights="hf" on a LocalCluster of processes: one download, a hash check in every worker.

The client resolves "hf" to the checked file in its cache before the graph exists; tasks carry
that path; every worker reads it with weights_only and hashes it before use. Workers that
download by themselves share huggingface_hub's file lock: one transfer per machine.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from xterrafm_tests_loopback_hub import LoopbackHub  # tests/hub/loopback_hub.py

distributed = pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from xterrafm import hub  # noqa: E402
from xterrafm.embedding import embed, runtime  # noqa: E402
from xterrafm.embedding.spec import ModelSpec  # noqa: E402
from xterrafm.errors import WeightsMismatchError  # noqa: E402

pytestmark = pytest.mark.requires_network_loopback  # a hub on 127.0.0.1

REPO = "MBZUAI/TerraFM"
TINY = "TerraFM-tiny.pth"


def _cube(size: int = 64):
    """A (time, band, y, x) S2 L2A reflectance cube on a UTM grid, dask-backed."""
    import dask.array as da
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from xterrafm.bands import band_names

    gbox = GeoBox.from_bbox((600000, 5100000, 600000 + 10 * size, 5100000 + 10 * size),
                            "EPSG:32632", resolution=10)
    bands = band_names("s2_l2a")
    values = np.random.default_rng(0).uniform(0.02, 0.4, (1, len(bands), size, size))
    coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
    coords["band"] = bands
    coords["time"] = np.array(["2021-06-15"], dtype="datetime64[ns]")
    return xr.DataArray(da.from_array(values.astype(np.float32), chunks=(1, -1, 32, 32)),
                        dims=("time", "band", "y", "x"), coords=coords,
                        attrs={"modality": "s2_l2a"})


@pytest.fixture(scope="module")
def hub_cluster(tmp_path_factory, tiny_files):
    """Loopback hub holding a tiny checkpoint, the environment pointing at it (pinned through
    XTERRAFM_PUBLISHED_WEIGHTS), and a LocalCluster of 2 worker processes started in it."""
    import huggingface_hub.constants

    root = tmp_path_factory.mktemp("hub-cluster")
    digest = hashlib.sha256(tiny_files["pth"].read_bytes()).hexdigest()
    with pytest.MonkeyPatch.context() as mp, LoopbackHub() as server:
        commit = server.publish(REPO, {TINY: tiny_files["pth"]})
        mp.setenv("HF_ENDPOINT", server.url)
        mp.setenv("HF_HUB_CACHE", str(root / "client-and-workers-cache"))
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        mp.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv(hub.OVERRIDE_ENV, json.dumps(
            {"terrafm-tiny": {"repo_id": REPO, "filename": TINY, "sha256": digest}}))
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        hub.clear_caches()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield {"server": server, "client": client, "commit": commit, "root": root,
                   "digest": digest}
        hub.clear_caches()


def test_many_workers_one_download_and_a_hash_check_in_each(hub_cluster, tiny_files):
    server, client = hub_cluster["server"], hub_cluster["client"]
    client.run(runtime.clear_cache)
    client.run(hub.clear_caches)
    emb = embed(_cube(), model="terrafm-tiny", weights="hf", tile=32, block_cells=1,
                client=client)
    # the graph was built against the client's checked copy; nothing was asked twice
    assert emb.attrs["weights"] == f"hf://{REPO}@{hub_cluster['commit']}/{TINY}"
    assert len(server.gets("cdn")) == 1 and server.count("HEAD", "hub") == 1
    got = client.compute(emb).result()
    path = hub.resolve_weights_for_cluster("hf", "terrafm-tiny")
    spec = ModelSpec(model="terrafm-tiny", weights=path,
                     weights_sha256=emb.attrs["weights_sha256"], modality="s2_l2a")
    # every worker builds the model (as a batch job's preload does)
    client.run(lambda s: runtime.get_model(s) and None, spec)
    assert len(server.gets("cdn")) == 1 and server.count("HEAD", "hub") == 1
    workers = client.run(hub.stats)
    assert len(workers) == 2
    for stats in workers.values():
        assert stats.get("hub_calls", 0) == 0  # workers never asked the hub
        assert stats["files_hashed"] == 1 and stats["file_checks"] >= 1  # but checked it
        assert stats["bytes_hashed"] == tiny_files["pth"].stat().st_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        local = embed(_cube(), model="terrafm-tiny", weights=tiny_files["pth"], tile=32,
                      block_cells=1).compute(scheduler="threads")
    assert emb.attrs["weights_sha256"] == local.attrs["weights_sha256"]
    np.testing.assert_allclose(got.values, local.values, atol=1e-5)


def test_a_batch_job_store_with_hf_weights_needs_no_further_transfer(hub_cluster, tmp_path):
    from xterrafm.store import embed_to_zarr

    server, client = hub_cluster["server"], hub_cluster["client"]
    client.run(runtime.clear_cache)
    before = len(server.gets("cdn"))
    summary = embed_to_zarr(_cube(), str(tmp_path / "e.zarr"), client=client,
                            model="terrafm-tiny", weights="hf", tile=32, block_cells=1,
                            progress=False)
    assert summary.complete
    assert len(server.gets("cdn")) == before  # the client's checked copy served the job
    # the job's preload and its blocks used one and the same model spec in each worker
    assert all(s.get("models_built", 0) == 1 for s in client.run(runtime.stats).values())


def test_workers_that_download_themselves_share_one_transfer(hub_cluster):
    server, client = hub_cluster["server"], hub_cluster["client"]
    before = len(server.gets("cdn"))
    fresh = str(hub_cluster["root"] / "workers-own-cache")
    paths = client.run(hub.download_published_weights, "terrafm-tiny", cache_dir=fresh)
    assert len(set(map(str, paths.values()))) == 1  # same file, same place
    assert len(server.gets("cdn")) == before + 1  # huggingface_hub's lock: one transfer
    assert server.count("HEAD", "hub") >= 2  # each worker asked for the metadata


def test_workers_refuse_a_file_changed_after_the_graph_was_built(hub_cluster):
    client = hub_cluster["client"]
    client.run(runtime.clear_cache)
    emb = embed(_cube(), model="terrafm-tiny", weights="hf", tile=32, block_cells=1)
    path = hub.resolve_weights_for_cluster("hf", "terrafm-tiny")
    blob = Path(path).resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, other bytes, newer mtime
    blob.write_bytes(bytes(data))
    with pytest.raises(WeightsMismatchError, match="truncated or corrupted"):
        client.compute(emb).result(timeout=120)
