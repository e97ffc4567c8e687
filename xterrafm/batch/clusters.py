"""Open and always close the Dask cluster a batch job runs on.

``--cluster`` on the command line maps onto :func:`open_cluster`:

- ``threads``: no distributed scheduler, dask's threaded scheduler in this process;
- ``local``: a :class:`distributed.LocalCluster` sized to this machine (the default);
- ``gateway``: a new cluster from a Dask Gateway, configured through cluster options;
- anything else: the address of a running scheduler (``tcp://host:8786``), left running.

Clusters this module creates are shut down when the ``with`` block ends, whether the job
finished, failed or was interrupted (``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from xterrafm import _compat
from xterrafm._imports import import_gate
from xterrafm.errors import ClusterError

__all__ = [
    "ClusterError",
    "GatewayOptions",
    "LocalOptions",
    "RunningCluster",
    "close_gateway",
    "gateway_cluster_options",
    "local_scheduler_config",
    "open_cluster",
]

log = logging.getLogger(__name__)

#: How long tasks of a LocalCluster we start may wait for a worker when none is left (a nanny
#: restarts a dead worker within seconds): then they fail and the job ends with an error
#: instead of waiting forever. Used unless ``distributed.scheduler.no-workers-timeout`` is set.
LOCAL_NO_WORKERS_TIMEOUT = "60s"

#: Root-task queuing of the LocalClusters we start: off (``inf``). With distributed's default
#: (1.1) the scheduler hands a worker a new read task only as a thread frees, so while both
#: threads run forward passes no read of the next blocks starts, and every read waits a round
#: trip: a 25-window job took 11 % longer, a 400-window job in 100 blocks 18.5 %
#: (docs/benchmarks.md, bench_scheduler.py). Memory stays bounded without it: a job submits at most a wave of
#: blocks (``xterrafm.store.waves.default_wave_size``). Used unless
#: ``distributed.scheduler.worker-saturation`` is set to another value than distributed's 1.1.
LOCAL_WORKER_SATURATION = "inf"
_DISTRIBUTED_WORKER_SATURATION = 1.1

#: ``--cluster`` values with a meaning; any other value is a scheduler address.
CLUSTER_KINDS = ("threads", "local", "gateway")



@dataclass(frozen=True)
class LocalOptions:
    """Sizing of a LocalCluster.

    With neither ``n_workers`` nor ``threads_per_worker`` given, the cluster is one worker
    process with a thread per CPU this process may use: model tasks release the GIL, the
    process holds one copy of the model, and on our 2-core benchmark machine 1 worker x 2
    threads embedded faster than distributed's default of 2 workers x 1 thread (see
    docs/benchmarks.md). Giving one of the two leaves the other to distributed.

    Attributes
    ----------
    n_workers : int, optional
        Worker processes.
    threads_per_worker : int, optional
        Threads per worker process.
    memory_limit : str, optional
        Memory per worker (``"4GiB"``), ``"auto"`` when omitted (machine memory / workers).
    resources : dict, optional
        Abstract resources each worker declares (``{"GPU": 1}``).
    """

    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    resources: dict[str, float] | None = None


@dataclass(frozen=True)
class GatewayOptions:
    """How to create a cluster through Dask Gateway.

    Attributes
    ----------
    address : str, optional
        Gateway URL; dask config ``gateway.address`` (``DASK_GATEWAY__ADDRESS``) when omitted.
    workers : int, optional
        Fixed number of workers (``cluster.scale``).
    adapt : tuple of int, optional
        ``(minimum, maximum)`` workers for adaptive scaling; exclusive with ``workers``.
    worker_cores : int, optional
        Cluster option ``worker_cores``.
    worker_memory : str, optional
        Cluster option ``worker_memory``; ``"8GiB"`` style, sent as GiB (float) or as the
        string, whichever the gateway's option accepts.
    gpu : int, optional
        Cluster option ``gpu``: GPUs per worker (the worker declares resource ``GPU``).
    wait_timeout : float
        Seconds to wait for the first worker before failing.
    """

    address: str | None = None
    workers: int | None = None
    adapt: tuple[int, int] | None = None
    worker_cores: int | None = None
    worker_memory: str | None = None
    gpu: int | None = None
    wait_timeout: float = 300.0


@dataclass
class RunningCluster:
    """What :func:`open_cluster` yields.

    Attributes
    ----------
    kind : str
        ``"threads"``, ``"local"``, ``"gateway"`` or ``"address"``.
    client : distributed.Client or None
        The client to compute with (``None`` for the threaded scheduler).
    cluster : object or None
        The cluster object this module created (LocalCluster or GatewayCluster), else ``None``.
    name : str
        Human-readable description for logs.
    """

    kind: str
    client: Any = None
    cluster: Any = None
    name: str = ""


def _memory_gib(value: str) -> float:
    with import_gate():
        from dask.utils import parse_bytes

    text = value.strip()
    nbytes = parse_bytes(text if not text.replace(".", "", 1).isdigit() else f"{text}GiB")
    return nbytes / 2**30


def gateway_cluster_options(options: Any, request: GatewayOptions) -> Any:
    """Fill a gateway's cluster ``options`` object from ``request``.

    Parameters
    ----------
    options : dask_gateway.options.Options
        What ``Gateway.cluster_options()`` returned (the fields the server declares).
    request : GatewayOptions
        The values asked for; ``None`` values keep the server's defaults.

    Returns
    -------
    dask_gateway.options.Options
        ``options``, modified.

    Raises
    ------
    ClusterError
        If the gateway does not declare an option that was asked for, or rejects its value.
    """
    wanted: dict[str, Any] = {}
    if request.worker_cores is not None:
        wanted["worker_cores"] = int(request.worker_cores)
    if request.worker_memory is not None:
        wanted["worker_memory"] = request.worker_memory
    if request.gpu is not None:
        wanted["gpu"] = int(request.gpu)
    declared = set(options)
    missing = sorted(set(wanted) - declared)
    if missing:
        raise ClusterError(
            f"the Dask Gateway does not offer cluster option(s) {missing} (it offers "
            f"{sorted(declared)}); see docs/gateway.md for a server config that does"
        )
    for key, value in wanted.items():
        candidates = [value]
        if key == "worker_memory":
            candidates = [_memory_gib(value), value]
        error: Exception | None = None
        for candidate in candidates:
            try:
                options[key] = candidate
                error = None
                break
            except (TypeError, ValueError) as err:
                error = err
        if error is not None:
            raise ClusterError(f"the Dask Gateway rejected {key}={value!r}: {error}") from error
    return options


def close_gateway(gateway: Any) -> None:
    """Close a ``dask_gateway.Gateway`` client for good.

    With distributed >= 2025, a closed ``Gateway`` raises from ``__del__`` (its finaliser calls
    ``close()`` again, which touches the stopped event loop). Raised during garbage collection,
    that error can land inside unrelated code (it breaks ``ast.parse`` in CPython 3.11), so the
    loop runner is detached after closing and the finaliser has nothing left to do.
    """
    try:
        gateway.close()
    finally:
        if hasattr(gateway, "_loop_runner"):
            del gateway._loop_runner


def local_scheduler_config() -> dict[str, Any]:
    """Scheduler settings of the LocalClusters xterrafm starts, over the user's dask config.

    ``distributed.scheduler.no-workers-timeout``: :data:`LOCAL_NO_WORKERS_TIMEOUT` unless set;
    ``distributed.scheduler.worker-saturation``: :data:`LOCAL_WORKER_SATURATION` unless set to
    another value than distributed's default.
    """
    with import_gate():
        import dask

    timeout = dask.config.get("distributed.scheduler.no-workers-timeout", None)
    saturation = dask.config.get("distributed.scheduler.worker-saturation", None)
    if saturation in (None, _DISTRIBUTED_WORKER_SATURATION):
        saturation = LOCAL_WORKER_SATURATION
    return {"distributed.scheduler.no-workers-timeout": timeout or LOCAL_NO_WORKERS_TIMEOUT,
            "distributed.scheduler.worker-saturation": saturation}


@contextmanager
def _local_cluster(options: LocalOptions) -> Iterator[RunningCluster]:
    with import_gate():
        from distributed import Client, LocalCluster

    kwargs: dict[str, Any] = {"dashboard_address": None, "host": "127.0.0.1"}
    if options.n_workers is None and options.threads_per_worker is None:
        kwargs["n_workers"] = 1  # distributed then gives it a thread per usable CPU
    if options.n_workers is not None:
        kwargs["n_workers"] = options.n_workers
    if options.threads_per_worker is not None:
        kwargs["threads_per_worker"] = options.threads_per_worker
    if options.memory_limit is not None:
        kwargs["memory_limit"] = options.memory_limit
    if options.resources:
        kwargs["resources"] = dict(options.resources)
    with import_gate():
        import dask

    with dask.config.set(local_scheduler_config()):
        cluster = LocalCluster(**kwargs)  # the scheduler reads these as it starts
    try:
        client = Client(cluster)
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            log.info(
                "LocalCluster: %d workers x %s threads",
                len(workers),
                sorted({w["nthreads"] for w in workers}),
            )
            yield RunningCluster("local", client, cluster, f"LocalCluster {cluster.scheduler_address}")
        finally:
            # no heartbeat may be in flight when the workers close, or each one in flight logs
            # a traceback (xterrafm._compat.stop_worker_heartbeat)
            with contextlib.suppress(Exception):
                client.run(_compat.stop_worker_heartbeat)
            client.close()
    finally:
        cluster.close()


@contextmanager
def _address_cluster(address: str) -> Iterator[RunningCluster]:
    with import_gate():
        from distributed import Client

    try:
        client = Client(address, timeout="30s")
    except OSError as err:
        raise ClusterError(f"cannot reach a Dask scheduler at {address!r}: {err}") from err
    try:
        yield RunningCluster("address", client, None, f"scheduler {address}")
    finally:
        client.close()


@contextmanager
def _gateway_cluster(request: GatewayOptions) -> Iterator[RunningCluster]:
    try:
        with import_gate():
            from dask_gateway import Gateway
    except ImportError as err:  # pragma: no cover - dask-gateway is in the distributed extra
        raise ClusterError("--cluster gateway needs dask-gateway: pip install dask-gateway") from err
    if request.workers is not None and request.adapt is not None:
        raise ClusterError("give either a fixed number of workers or adaptive bounds, not both")
    try:
        gateway = Gateway(request.address) if request.address else Gateway()
    except ValueError as err:
        raise ClusterError(
            f"no Dask Gateway address: pass --gateway-address or set DASK_GATEWAY__ADDRESS ({err})"
        ) from err
    cluster = None
    try:
        try:
            options = gateway_cluster_options(gateway.cluster_options(), request)
            cluster = gateway.new_cluster(options, shutdown_on_close=True)
        except ClusterError:
            raise
        except Exception as err:
            raise ClusterError(
                f"cannot create a cluster at Dask Gateway {gateway.address}: {err}"
            ) from err
        log.info("Dask Gateway cluster %s created at %s", cluster.name, gateway.address)
        if request.adapt is not None:
            cluster.adapt(minimum=request.adapt[0], maximum=request.adapt[1])
        else:
            cluster.scale(request.workers if request.workers is not None else 1)
        # the job passes this client explicitly wherever it computes; leave the default alone
        client = cluster.get_client(set_as_default=False)
        try:
            minimum = request.adapt[0] if request.adapt is not None else (request.workers or 1)
            client.wait_for_workers(max(1, minimum), timeout=request.wait_timeout)
            yield RunningCluster("gateway", client, cluster, f"gateway cluster {cluster.name}")
        finally:
            client.close()
    finally:
        if cluster is not None:
            log.info("shutting down Dask Gateway cluster %s", cluster.name)
            try:
                cluster.shutdown()
            except Exception as err:  # noqa: BLE001 - report and keep going with cleanup
                log.warning("could not shut down gateway cluster %s: %s", cluster.name, err)
            finally:
                close_gateway(cluster.gateway)
        close_gateway(gateway)


@contextmanager
def open_cluster(
    cluster: str = "local",
    *,
    local: LocalOptions | None = None,
    gateway: GatewayOptions | None = None,
) -> Iterator[RunningCluster]:
    """Create or connect to the cluster named by ``cluster``; clean up on exit.

    Parameters
    ----------
    cluster : str
        ``"threads"``, ``"local"``, ``"gateway"`` or a scheduler address.
    local : LocalOptions, optional
        Sizing for ``"local"``.
    gateway : GatewayOptions, optional
        Address, scaling and cluster options for ``"gateway"``.

    Yields
    ------
    RunningCluster
        ``client`` is ``None`` for ``"threads"``.

    Raises
    ------
    ClusterError
        If the cluster cannot be created or reached.
    """
    if cluster == "threads":
        yield RunningCluster("threads", None, None, f"threaded scheduler ({os.cpu_count()} cores)")
    elif cluster == "local":
        with _local_cluster(local or LocalOptions()) as running:
            yield running
    elif cluster == "gateway":
        with _gateway_cluster(gateway or GatewayOptions()) as running:
            yield running
    else:
        with _address_cluster(cluster) as running:
            yield running
