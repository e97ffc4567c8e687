"""load_stac over HTTP from loopback servers: Range reads, transient and permanent failures."""

from __future__ import annotations

import os

import distributed
import numpy as np
import pytest

from tests.helpers.counting import raise_if_dask_computes
from tests.helpers.http_server import serve_http
from xterrafm.io import AssetReadError, RetryPolicy, load_stac

pytestmark = pytest.mark.requires_network_loopback

# Our own retry only (GDAL's per-request retry off), short waits.
OWN_RETRY = RetryPolicy(attempts=6, backoff_s=0.01, max_backoff_s=0.05, gdal_http_max_retry=0)


@pytest.fixture(scope="module")
def local_s2(synthetic_scene):
    return load_stac(synthetic_scene.item_collections["s2_l2a"], modality="s2_l2a").compute()


def test_http_matches_local(synthetic_scene, http_scene, url_of, local_s2):
    url = url_of(http_scene, synthetic_scene.item_collections["s2_l2a"])
    with raise_if_dask_computes():
        cube = load_stac(url, modality="s2_l2a")
    assert cube.attrs["item_ids"] == local_s2.attrs["item_ids"]
    before = http_scene.stats()
    np.testing.assert_array_equal(cube.values, local_s2.values)
    after = http_scene.stats()
    assert after["GET"] > before.get("GET", 0)  # pixels really came over HTTP


def test_http_static_catalog(synthetic_scene, http_scene, url_of):
    url = url_of(http_scene, synthetic_scene.catalog)
    cube = load_stac(url, modality="s1", collections="sentinel-1-rtc")
    local = load_stac(synthetic_scene.item_collections["s1"], modality="s1")
    np.testing.assert_array_equal(cube.values, local.values)


@pytest.mark.parametrize("retry", [OWN_RETRY, RetryPolicy(attempts=1, gdal_http_max_retry=5,
                                                            gdal_http_retry_delay_s=0.01)],
                         ids=["xterrafm-retry", "gdal-retry"])
def test_transient_failures_are_retried(synthetic_scene, flaky_http_scene, url_of, local_s2,
                                        retry):
    url = url_of(flaky_http_scene, synthetic_scene.item_collections["s2_l2a"])
    cube = load_stac(url, modality="s2_l2a", retry=retry)
    np.testing.assert_array_equal(cube.values, local_s2.values)
    assert flaky_http_scene.stats()["failed"] > 0  # failures were injected and overcome


def test_permanent_failure_names_href(synthetic_scene, url_of):
    sc = synthetic_scene
    bad = sc.band_paths["s2_l2a"][0]["B05"]
    bad_path = "/" + os.path.relpath(bad, sc.root).replace(os.sep, "/")
    with serve_http(sc.root, fail_paths=[bad_path]) as srv:
        url = url_of(srv, sc.item_collections["s2_l2a"])
        bad_url = url_of(srv, bad)
        cube = load_stac(url, modality="s2_l2a",
                         retry=RetryPolicy(attempts=2, backoff_s=0.01, gdal_http_max_retry=0))
        with pytest.raises(AssetReadError, match=bad_url.replace(".", r"\.")):
            cube.compute()
        # with fill_failed the asset's pixels become NaN, everything else is read
        filled = load_stac(url, modality="s2_l2a", fill_failed=True,
                           retry=RetryPolicy(attempts=2, backoff_s=0.01, gdal_http_max_retry=0))
        assert filled.attrs["fill_failed"] == 1
        v = filled.compute()
    assert np.isnan(v.isel(time=0).sel(band="B05")).all()
    assert np.isfinite(v.isel(time=0).sel(band="B04")).any()
    local = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a").compute()
    np.testing.assert_array_equal(v.isel(time=1).values, local.isel(time=1).values)


def test_local_cluster_with_flaky_http(synthetic_scene, flaky_http_scene, url_of, local_s2):
    url = url_of(flaky_http_scene, synthetic_scene.item_collections["s2_l2a"])
    # GDAL's retry only: passes only if the GDAL options reach the worker processes
    gdal_only = RetryPolicy(attempts=1, gdal_http_max_retry=5, gdal_http_retry_delay_s=0.01)
    cube = load_stac(url, modality="s2_l2a", chunks={"y": 224, "x": 224}, retry=gdal_only)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = client.compute(cube).result()
        # a permanent failure reaches the client as AssetReadError naming the href
        sc = synthetic_scene
        bad = "/" + os.path.relpath(sc.band_paths["s2_l2a"][1]["B11"], sc.root)
        with serve_http(sc.root, fail_paths=[bad]) as srv:
            broken = load_stac(url_of(srv, sc.item_collections["s2_l2a"]), modality="s2_l2a",
                               retry=RetryPolicy(attempts=2, backoff_s=0.01,
                                                 gdal_http_max_retry=0))
            with pytest.raises(AssetReadError, match="B11.tif"):
                client.compute(broken).result()
    np.testing.assert_array_equal(got.values, local_s2.values)
    assert flaky_http_scene.stats()["failed"] > 0
