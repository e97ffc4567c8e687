"""Fixtures for batch-job tests: a real dask-gateway-server on 127.0.0.1, tiny job settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xterrafm.batch.gateway_config import write_gateway_config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class GatewayServer:
    """A running dask-gateway-server: public address, config file, log file and process."""

    address: str
    config: Path
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask-gateway-server exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"dask-gateway-server not healthy after {timeout} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    # SIGINT lets the gateway stop its clusters (stop_clusters_on_shutdown) and its proxy.
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """Start ``dask-gateway-server`` (UnsafeLocalBackend + Go proxy) on free 127.0.0.1 ports."""
    root = tmp_path_factory.mktemp("gateway")
    api_port, proxy_port = _free_port(), _free_port()
    config = write_gateway_config(
        root / "dask_gateway_config.py",
        api_address=f"127.0.0.1:{api_port}",
        proxy_address=f"127.0.0.1:{proxy_port}",
        backend="unsafe-local",
        clusters_directory=root / "clusters",
        max_worker_cores=2,
        default_worker_memory=1.0,
        max_worker_memory=4.0,
        max_gpus=1,
    )
    log = root / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "-f", str(config)],
            cwd=root,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{proxy_port}"
    try:
        _wait_healthy(f"{address}/api/health", process, log)
        yield GatewayServer(address=address, config=config, log=log, process=process)
    finally:
        _stop(process)


# -- batch job settings shared by the fault tests ---------------------------------------------------
#: Tiny model, small windows and chunks: many blocks (so a job can be disturbed part way) that
#: each take a fraction of a second on one core.
TINY_JOB = ["--model", "terrafm-tiny", "--tile", "32", "--chunk", "64", "--batch-size", "16",
            "--no-preview", "--no-progress"]


@pytest.fixture(scope="session")
def tiny_job_args() -> list[str]:
    """Command-line options of the small, fast job the fault tests run."""
    return list(TINY_JOB)


@pytest.fixture(scope="session")
def batch_scene(tmp_path_factory):
    """A small S2 L2A synthetic scene (192 x 192 px, 2 dates): 18 blocks of the tiny job.

    Read-only: tests that damage files copy it first.
    """
    from xterrafm.datasets import make_synthetic_scene

    root = tmp_path_factory.mktemp("batch_scene")
    return make_synthetic_scene(root, seed=0, width=192, height=192, n_dates=2,
                                modalities=("s2_l2a",))


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory, batch_scene, tiny_job_args) -> Path:
    """An undisturbed run of the tiny job (threaded scheduler, in this process)."""
    from xterrafm.cli import main

    out = tmp_path_factory.mktemp("reference") / "emb.zarr"
    source = str(batch_scene.item_collections["s2_l2a"])
    code = main(["embed", source, "--out", str(out), "--cluster", "threads", "-q",
                 *tiny_job_args])
    assert code == 0
    return out
