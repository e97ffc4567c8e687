"""Scheduler plumbing: GPU resource annotations that survive graph optimisation, progress,
and building the model in every worker while the first blocks are being read.

Model tasks ask for ``resources={"GPU": 1}`` when the distributed workers declare a ``GPU``
resource (:func:`gpu_resources`). Dask's array optimisation fuses tasks into a plain dict
and thereby drops layer annotations, so the resource request would silently vanish.
:func:`optimize_keeping_annotations` runs the same optimisation and then re-attaches each
layer's annotations to the (possibly fused and renamed) tasks that contain its keys;
:func:`keep_annotations` installs it for a block of code, and :func:`compute` uses it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from xterrafm import _compat
from xterrafm._imports import import_gate

with import_gate():
    import dask

__all__ = [
    "compute",
    "get_client",
    "gpu_resources",
    "keep_annotations",
    "optimize_keeping_annotations",
    "settle_preload",
    "start_preload",
    "start_reader_warmup",
]


def get_client(client: Any = None) -> Any:
    """The given client, else the current default distributed client, else None."""
    if client is not None:
        return client
    try:
        with import_gate():
            from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def gpu_resources(resources: Any = "auto", client: Any = None) -> dict | None:
    """The resource request for model tasks.

    Parameters
    ----------
    resources : "auto", None or dict
        ``"auto"``: ``{"GPU": 1}`` when a distributed client is active (given or default) and at
        least one of its workers declares a ``GPU`` resource, else None. A dict is used as is;
        None disables the request.
    client : distributed.Client, optional
        Client whose workers are inspected (default: the current default client).

    Returns
    -------
    dict or None
    """
    if resources is None or isinstance(resources, Mapping):
        return dict(resources) if resources else None
    if resources != "auto":
        raise ValueError(f"resources must be 'auto', None or a dict; got {resources!r}")
    client = get_client(client)
    if client is None:
        return None
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
        return {"GPU": 1}
    return None


def _constituent_keys(node: Any) -> list:
    """Keys of the original tasks inside a (possibly fused) task-spec node."""
    keys = [node.key]
    if isinstance(node, _compat.Task) and node.func is _compat.execute_subgraph and node.args:
        inner = node.args[0]
        if isinstance(inner, Mapping):
            keys.extend(inner)
    return keys


def optimize_keeping_annotations(dsk: Any, keys: Sequence, **kwargs: Any) -> Any:
    """Dask's array optimisation, keeping layer annotations on the tasks they applied to.

    Parameters
    ----------
    dsk : HighLevelGraph or dict
    keys : sequence
        Output keys.

    Returns
    -------
    HighLevelGraph
        Same tasks as :func:`dask.array.optimization.optimize` gives; tasks built from
        annotated keys carry those annotations (merged as dask merges them in blockwise fusion).
    """
    with import_gate():
        from dask.array.optimization import optimize
        from dask.core import flatten
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
        from dask.utils import ensure_dict

    with dask.config.set({"optimization.fuse.active": False}):
        hlg = optimize(dsk, keys, **kwargs)  # blockwise fusion + cull; layers keep annotations
    by_key: dict = {}
    for layer in hlg.layers.values():
        if layer.annotations:
            for k in layer:
                by_key[k] = layer.annotations
    if not by_key or dask.config.get("optimization.fuse.active") is False:
        return hlg
    # the low-level steps of dask.array.optimization.optimize
    fused = _compat.convert_legacy_graph(ensure_dict(hlg))
    fused = _compat.optimize_slices(_compat.fuse_linear_task_spec(fused, keys=list(flatten(keys))))
    groups: dict[str, tuple[dict, dict]] = {}
    plain: dict = {}
    for key, node in fused.items():
        found = [by_key[k] for k in _constituent_keys(node) if k in by_key]
        if not found:
            plain[key] = node
            continue
        ann = _compat.fuse_annotations(*found) if len(found) > 1 else dict(found[0])
        tag = json.dumps(ann, sort_keys=True, default=str)
        groups.setdefault(tag, (ann, {}))[1][key] = node
    layers = {"unannotated": MaterializedLayer(plain)}
    for i, (ann, tasks) in enumerate(groups.values()):
        layers[f"annotated-{i}"] = MaterializedLayer(tasks, annotations=ann)
    return HighLevelGraph(layers, {name: set() for name in layers})


@contextlib.contextmanager
def keep_annotations() -> Iterator[None]:
    """Within this block, dask arrays (and xarray objects on them) are optimised with
    :func:`optimize_keeping_annotations`, so GPU resource requests reach the scheduler."""
    with dask.config.set(array_optimize=optimize_keeping_annotations):
        yield


def compute(*objs: Any, client: Any = None, progress: bool = True) -> tuple:
    """Compute dask-backed objects keeping resource annotations, with an optional progress bar.

    Parameters
    ----------
    *objs
        Dask collections (arrays, xarray objects).
    client : distributed.Client, optional
        Compute on this client (default: the current default client if any, else the local
        scheduler configured in dask).
    progress : bool
        Show a progress bar: :func:`distributed.progress` on a client, a tqdm bar
        (:class:`tqdm.dask.TqdmCallback`) on local schedulers.

    Returns
    -------
    tuple
        The computed objects.
    """
    client = get_client(client)
    with keep_annotations():
        if client is not None:
            futures = client.compute(list(objs))
            if progress:
                with import_gate():
                    from distributed import progress as dist_progress

                # this client's scheduler, which need not be the default client's
                dist_progress(futures, scheduler=client.scheduler.address)
            return tuple(client.gather(futures))
        if progress:
            with import_gate():
                from tqdm.dask import TqdmCallback

            with TqdmCallback(desc="embedding"):
                return dask.compute(*objs)
        return dask.compute(*objs)


def start_preload(spec: Any, client: Any = None, resources: Mapping | None = None) -> list:
    """Start building the model in every process that will run model tasks; do not wait.

    Parameters
    ----------
    spec : ModelSpec
        The spec of the graph's model tasks.
    client : distributed.Client, optional
        With a client: per worker, pinned to it, one task that builds the model (only on
        workers with ``resources`` when given), submitted before the job's graph and
        therefore run first (the read kernels are loaded earlier still, while the plan is
        made: :func:`start_reader_warmup`). Without: a background thread of this process
        builds the model (local schedulers run tasks here).
    resources : mapping, optional
        Resource request of the model tasks (e.g. ``{"GPU": 1}``).

    Returns
    -------
    list
        Handles (futures or the thread) to keep until the job ends. A failed preload is not
        reported here: the first block then builds the model itself and raises the error.
    """
    import threading

    from xterrafm.embedding import runtime

    if client is None:
        def _build() -> None:
            try:
                runtime.preload(spec)
            except Exception:  # noqa: BLE001 - the first block raises it again, in context
                pass

        thread = threading.Thread(target=_build, name="xterrafm-preload", daemon=True)
        thread.start()
        return [thread]
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    futures = []
    for addr, info in workers.items():
        have = info.get("resources") or {}
        if not resources or all(have.get(k, 0) >= v for k, v in resources.items()):
            futures.append(client.submit(runtime.preload, spec, workers=[addr],
                                         priority=1_000_001, allow_other_workers=False,
                                         pure=False,
                                         resources=dict(resources) if resources else None))
    return futures


def start_reader_warmup(client: Any) -> None:
    """Load the read kernels on every worker of ``client`` now; do not wait.

    One task per worker, pinned to it (:func:`~xterrafm.embedding.runtime.warm_readers`),
    submitted while the client still hashes the weights, so that a fresh worker has them
    loaded (about 0.4 s) before the model build and the first reads. The tasks are not
    cancelled when the job ends or never starts; a worker that already has the kernels ends
    its task at once.
    """
    with import_gate():
        from distributed import fire_and_forget

    from xterrafm.embedding import runtime

    for addr in client.scheduler_info(n_workers=-1).get("workers", {}):
        fire_and_forget(client.submit(runtime.warm_readers, workers=[addr],
                                      priority=1_000_002, allow_other_workers=False,
                                      pure=False))


def settle_preload(futures: Sequence[Any], timeout: float = 60.0) -> None:
    """Let the model builds of :func:`start_preload` end when a job turns out to need none.

    Cancelling a preload task that already runs does not stop its thread, and the worker logs
    a ``CancelledError`` warning for it; a resumed job with nothing left to do would show that
    warning on every run. So this waits (at most ``timeout`` seconds) for the builds to end,
    and only cancels what is still running after that. Failed builds are not reported.

    Parameters
    ----------
    futures : sequence of distributed.Future
        What :func:`start_preload` returned for a client.
    timeout : float
        Seconds to wait before cancelling.
    """
    if not futures:
        return
    with import_gate():
        from distributed import wait

    try:
        wait(list(futures), timeout=timeout)
    except TimeoutError:
        futures[0].client.cancel([f for f in futures if not f.done()])
