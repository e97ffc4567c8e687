"""``xterrafm embed --cluster gateway`` against a real dask-gateway-server on 127.0.0.1."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xterrafm.batch.clusters import close_gateway
from xterrafm.cli import EXIT_CLUSTER, EXIT_FAILURE, EXIT_OK, main

pytestmark = [pytest.mark.requires_gateway, pytest.mark.requires_network_loopback]

TINY = ["--model", "terrafm-tiny", "--tile", "32", "--synthetic-size", "128", "--no-progress"]


def _open(store: Path) -> xr.DataArray:
    return xr.open_zarr(store, decode_coords="all", consolidated=False)["embeddings"]


def _assert_no_clusters(gateway_server, address: str) -> None:
    from dask_gateway import Gateway

    gateway = Gateway(address)
    try:
        deadline = time.monotonic() + 30
        while gateway.list_clusters() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gateway.list_clusters() == []
    finally:
        close_gateway(gateway)
    # the backend removes a cluster's working directory once its processes are stopped
    clusters_dir = Path(gateway_server.config).parent / "clusters"
    deadline = time.monotonic() + 30
    while clusters_dir.exists() and any(clusters_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not clusters_dir.exists() or not any(clusters_dir.iterdir())


def test_embed_on_a_gateway_cluster_then_shut_it_down(gateway_server, tmp_path: Path,
                                                      capsys) -> None:
    out = tmp_path / "gateway" / "emb.zarr"
    code = main(["embed", "--out", str(out), "--cluster", "gateway",
                 "--gateway-address", gateway_server.address, "--workers", "1",
                 "--worker-cores", "1", "--worker-memory", "1.5GiB", *TINY])
    assert code == EXIT_OK
    emb = _open(out)
    assert emb.dims == ("time", "embedding", "y", "x")
    assert emb.sizes["y"] == emb.sizes["x"] == 4 and emb.sizes["embedding"] == 32
    assert emb.rio.crs.to_epsg() == 32632
    assert np.isfinite(emb.values).any()
    assert (out.parent / "emb_preview.png").stat().st_size > 0
    # the work ran on a gateway cluster, which was stopped afterwards
    captured = capsys.readouterr()
    name = re.search(r"Dask Gateway cluster (\w+) created", captured.err).group(1)
    assert f"on gateway cluster {name}" in captured.out
    _assert_no_clusters(gateway_server, gateway_server.address)
    assert f"Stopping cluster {name}" in gateway_server.log_text()

    # the same job on the threaded scheduler gives the same store, at the precision the gateway
    # workers chose (bf16 on a CPU with native bf16: the workers the gateway starts do not
    # inherit this process's XTERRAFM_CPU_BF16=0)
    precision = emb.attrs["precision"]
    ref = tmp_path / "threads" / "emb.zarr"
    assert main(["embed", "--out", str(ref), "--cluster", "threads", "-q",
                 "--precision", precision, *TINY]) == EXIT_OK
    assert _open(ref).attrs["precision"] == precision
    np.testing.assert_allclose(_open(out).values, _open(ref).values, rtol=0, atol=1e-5)


def test_gateway_cluster_is_shut_down_when_the_job_fails(gateway_server, tmp_path: Path,
                                                         capsys) -> None:
    scene_dir = tmp_path / "scene"
    from xterrafm.datasets import make_synthetic_scene

    scene = make_synthetic_scene(scene_dir, width=64, height=64, n_dates=1,
                                 modalities=("s2_l2a",))
    bad = scene.band_paths["s2_l2a"][0]["B04"]
    bad.write_bytes(b"this is not a GeoTIFF")
    code = main([
        "embed", str(scene.item_collections["s2_l2a"]), "--out", str(tmp_path / "e.zarr"),
        "--cluster", "gateway", "--gateway-address", gateway_server.address, "--workers", "1",
        *TINY])
    assert code == EXIT_FAILURE
    assert str(bad) in capsys.readouterr().err
    _assert_no_clusters(gateway_server, gateway_server.address)


def test_unknown_gateway_option_is_refused_before_creating_a_cluster(gateway_server,
                                                                     tmp_path: Path) -> None:
    # the fixture's gateway caps gpu at 1 per worker: asking for 4 is refused, nothing started
    code = main(["embed", "--out", str(tmp_path / "e.zarr"), "--cluster", "gateway",
                 "--gateway-address", gateway_server.address, "--gpu", "4", *TINY])
    assert code == EXIT_CLUSTER
    _assert_no_clusters(gateway_server, gateway_server.address)
