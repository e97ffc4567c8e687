"""The one place where xterrafm uses private APIs of its dependencies.

Each name below is imported from a private module of dask or odc-loader, for a reason given
next to it. They were checked against the versions in :data:`CHECKED_AGAINST` (pinned in
``constraints.txt``); :func:`check` imports them all and says which one moved, so that an
upgrade fails with a clear message in ``tests/test_compat.py`` instead of somewhere deep in a
job. The imports happen on first use of a name (module ``__getattr__``), so importing this
module costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from xterrafm._imports import import_gate

__all__ = ["CHECKED_AGAINST", "PRIVATE_NAMES", "check", "stop_worker_heartbeat"]

#: Versions the private names were checked against.
CHECKED_AGAINST = {"dask": "2026.8.0", "distributed": "2026.8.0", "odc-loader": "0.6.5"}

#: name here -> (module, attribute). Why each is needed:
PRIVATE_NAMES: dict[str, tuple[str, str]] = {
    # dask's array optimisation fuses tasks and drops layer annotations (resources={"GPU": 1});
    # keeping them needs the low-level steps of dask.array.optimization.optimize
    "Task": ("dask._task_spec", "Task"),
    "execute_subgraph": ("dask._task_spec", "_execute_subgraph"),
    "convert_legacy_graph": ("dask._task_spec", "convert_legacy_graph"),
    "fuse_linear_task_spec": ("dask._task_spec", "fuse_linear_task_spec"),
    "optimize_slices": ("dask.array.optimization", "_optimize_slices"),
    "fuse_annotations": ("dask.blockwise", "_fuse_annotations"),
    # a retrying odc-loader reader runs odc's own read inside odc's rasterio environment
    "rio_env": ("odc.loader._rio", "rio_env"),
    "rio_read": ("odc.loader._rio", "rio_read"),
    # the fast coarse-band read resolves dtypes and nodata exactly as odc-loader does
    "resolve_dst_dtype": ("odc.loader._reader", "resolve_dst_dtype"),
    "resolve_dst_nodata": ("odc.loader._reader", "resolve_dst_nodata"),
    "resolve_src_nodata": ("odc.loader._reader", "resolve_src_nodata"),
}


def __getattr__(name: str) -> Any:
    if name not in PRIVATE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = PRIVATE_NAMES[name]
    with import_gate():
        value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def check() -> list[str]:
    """Import every private name; one line per name that is missing (empty when all are there).

    Each line names the module, the attribute and the version it was checked against.
    """
    problems = []
    for name, (module, attr) in PRIVATE_NAMES.items():
        try:
            with import_gate():
                getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            dist = "odc-loader" if module.startswith("odc.loader") else module.split(".")[0]
            problems.append(f"{module}.{attr} ({name}) is gone: {err}; xterrafm was checked "
                            f"against {dist} {CHECKED_AGAINST.get(dist, '?')}")
    return problems


async def stop_worker_heartbeat(dask_worker: Any, timeout: float = 2.0) -> bool:
    """Stop a distributed worker's heartbeat and wait for one still in flight to be answered.

    Run on every worker (``client.run``) before a cluster is closed. ``Worker.close`` stops the
    heartbeat's periodic callback but then closes the worker's connection pool while a heartbeat
    may still await the scheduler's reply, and that heartbeat logs ``Failed to communicate with
    scheduler during heartbeat`` with a traceback (dask/distributed#7105). Uses the worker's
    ``periodic_callbacks`` and its pool's ``occupied`` comms (attributes, not documented API).

    Parameters
    ----------
    dask_worker : distributed.Worker
        Passed by ``client.run``.
    timeout : float
        Seconds to wait at most for a reply in flight.

    Returns
    -------
    bool
        True when no call to the scheduler was left in flight.
    """
    import asyncio
    import time

    callback = getattr(dask_worker, "periodic_callbacks", {}).get("heartbeat")
    if callback is not None:
        callback.stop()
    pool = getattr(dask_worker, "rpc", None)
    address = getattr(getattr(dask_worker, "scheduler", None), "address", None)
    occupied = getattr(pool, "occupied", None)
    if occupied is None or address is None:
        return False
    deadline = time.monotonic() + timeout
    while occupied.get(address) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return not occupied.get(address)
