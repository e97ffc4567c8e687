"""A ``dask-gateway-server`` configuration that offers the cluster options xterrafm uses.

``xterrafm embed --cluster gateway`` passes ``worker_cores``, ``worker_memory`` (GiB) and
``gpu`` (GPUs per worker) as Dask Gateway *cluster options*. A gateway only accepts options its
administrator declared, so this module renders a server configuration file that declares them,
maps ``gpu`` to the Dask worker resource ``GPU`` (one thread per GPU) and sets the worker's
torch/OpenMP threads to its cores. The test-suite runs a real server from this file and
``docs/gateway.md`` explains each line.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BACKENDS", "render_gateway_config", "write_gateway_config"]

#: Short backend names -> dask-gateway-server backend classes usable without a batch system.
BACKENDS = {
    "unsafe-local": "dask_gateway_server.backends.local.UnsafeLocalBackend",
    "local": "dask_gateway_server.backends.local.LocalBackend",
    "inprocess": "dask_gateway_server.backends.inprocess.InProcessBackend",
}

_TEMPLATE = '''\
# dask-gateway-server configuration rendered by xterrafm.batch.gateway_config.
# Start with: dask-gateway-server -f {filename}
import sys

from dask_gateway_server.options import Float, Integer, Options

# Private API (the proxy and the clusters talk to it) and public proxy (clients connect here).
c.Gateway.address = {api_address!r}
c.Proxy.address = {proxy_address!r}
c.Gateway.backend_class = {backend_class!r}
# Any user name is accepted; set c.SimpleAuthenticator.password for a shared password.
c.Gateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
{password_line}
# run distributed's scheduler and worker modules (not console scripts) with the
# gateway's own Python so that clusters see the same packages (xterrafm, torch).
c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
c.ClusterConfig.idle_timeout = {idle_timeout!r}
{clusters_directory_line}

def _xterrafm_options_handler(options, user):
    """Map xterrafm's cluster options onto dask-gateway's cluster configuration."""
    gpus = int(options.gpu)
    cores = int(options.worker_cores)
    environment = {{"OMP_NUM_THREADS": str(cores), "MKL_NUM_THREADS": str(cores)}}
    worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
    if gpus:
        # Model tasks ask for the GPU resource; one task (thread) per GPU at a time.
        # (A DASK_DISTRIBUTED__WORKER__RESOURCES__GPU variable would arrive lower-cased.)
        worker_cmd += ["--resources", f"GPU={{gpus}}"]
    return {{
        "worker_cmd": worker_cmd,
        "worker_cores": cores,
        "worker_threads": gpus if gpus else cores,
        "worker_memory": int(float(options.worker_memory) * 2**30),
        "environment": environment,
    }}


c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max={max_worker_cores!r}, label="Cores per worker"),
    Float("worker_memory", default={default_worker_memory!r}, min=0.25,
          max={max_worker_memory!r}, label="Memory per worker (GiB)"),
    Integer("gpu", default=0, min=0, max={max_gpus!r}, label="GPUs per worker"),
    handler=_xterrafm_options_handler,
)
'''


def render_gateway_config(
    *,
    api_address: str = "127.0.0.1:8787",
    proxy_address: str = "127.0.0.1:8000",
    backend: str = "unsafe-local",
    clusters_directory: str | Path | None = None,
    password: str | None = None,
    max_worker_cores: int = 64,
    default_worker_memory: float = 2.0,
    max_worker_memory: float = 512.0,
    max_gpus: int = 8,
    idle_timeout: float = 0.0,
    filename: str = "dask_gateway_config.py",
) -> str:
    """Render a ``dask-gateway-server`` config file offering xterrafm's cluster options.

    Parameters
    ----------
    api_address : str
        ``host:port`` of the gateway's private API server.
    proxy_address : str
        ``host:port`` of the public proxy; clients use ``http://<proxy_address>``.
    backend : str
        A key of :data:`BACKENDS`: ``"unsafe-local"`` (processes as the gateway's own user; for
        one-user machines and tests), ``"local"`` (processes as the requesting user; needs root
        and local accounts) or ``"inprocess"`` (scheduler and workers inside the gateway).
    clusters_directory : str or Path, optional
        Where cluster working directories (TLS certificates, logs) go; a temporary directory
        per cluster when omitted.
    password : str, optional
        Shared password for the simple authenticator; none when omitted.
    max_worker_cores : int
        Largest ``worker_cores`` a user may request.
    default_worker_memory, max_worker_memory : float
        Default and largest memory per worker, in GiB.
    max_gpus : int
        Largest number of GPUs per worker a user may request.
    idle_timeout : float
        Seconds after which an idle cluster is shut down (0 disables).
    filename : str
        Name shown in the file's start-up comment.

    Returns
    -------
    str
        The configuration file text (Python, read by ``dask-gateway-server -f``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown gateway backend {backend!r}; choose one of {sorted(BACKENDS)}")
    clusters_line = (
        f"c.LocalBackend.clusters_directory = {str(clusters_directory)!r}"
        if clusters_directory is not None
        else ""
    )
    password_line = f"c.SimpleAuthenticator.password = {password!r}" if password else ""
    return _TEMPLATE.format(
        filename=filename,
        api_address=api_address,
        proxy_address=proxy_address,
        backend_class=BACKENDS[backend],
        password_line=password_line,
        clusters_directory_line=clusters_line,
        idle_timeout=float(idle_timeout),
        max_worker_cores=int(max_worker_cores),
        default_worker_memory=float(default_worker_memory),
        max_worker_memory=float(max_worker_memory),
        max_gpus=int(max_gpus),
    )


def write_gateway_config(path: str | Path, **kwargs) -> Path:
    """Write :func:`render_gateway_config` output to ``path`` and return the path.

    Parameters
    ----------
    path : str or Path
        Destination file (``.py``).
    **kwargs
        Passed to :func:`render_gateway_config`.
    """
    path = Path(path)
    path.write_text(render_gateway_config(filename=path.name, **kwargs))
    return path
