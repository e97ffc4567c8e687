"""Per-process model cache and torch settings for block functions.

Dask tasks carry a :class:`~xterrafm.embedding.spec.ModelSpec`, never the model. The first
task in a process that needs a model builds it (:func:`get_model`) and keeps it for the
process's life, keyed by the spec's config, weights hash, seed, device and precision; every
later task of that process reuses it. Tasks running in threads of one process share one model
(inference is read-only).

Torch intra-op threads are set once per process (:func:`configure_torch_threads`) so that
``dask threads x torch threads`` does not exceed the process's cores: independent forward
passes, one per dask thread, do not wait on each other, while a multi-threaded forward stalls
at its barriers whenever a read or normalisation runs beside it (docs/benchmarks.md).

Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting it switches off
glibc's adaptive thresholds, so every allocation above 128 KiB — each activation tensor of a
forward pass — becomes an ``mmap``/``munmap`` pair with fresh, zero-filled pages: about 10 %
of ViT-B's CPU throughput on our 2-core benchmark machine. :func:`tune_allocator` (run once per
process with the torch settings) raises the mmap threshold above such tensors and the trim
threshold above a forward pass's working set in those processes.

The module also keeps counters (:func:`stats`) of what ran here, which tests and diagnostics
read (e.g. through ``client.run(xterrafm.embedding.runtime.stats)``).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.embedding.spec import ModelSpec
from xterrafm.errors import WeightsMismatchError
from xterrafm.models.precision import resolve_precision

__all__ = [
    "clear_cache",
    "configure_torch_threads",
    "cuda_available",
    "default_torch_threads",
    "get_model",
    "precision_report",
    "preload",
    "record",
    "resolve_batch_size",
    "resolve_device",
    "stats",
    "tune_allocator",
]

_LOCK = threading.Lock()
_MODELS: dict[tuple, Any] = {}
_STATS: Counter = Counter()
_THREADS_SET: list[int] = []


def cuda_available() -> bool:
    """Whether torch sees a CUDA device in this process."""
    with import_gate():
        import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a GPU in this process, else ``"cpu"``."""
    with import_gate():
        import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but torch sees no CUDA device in "
                           f"this process (pid {os.getpid()})")
    return str(device)


def precision_report(device: str = "auto") -> dict[str, Any]:
    """What ``precision="auto"`` becomes in this process, and why.

    Run on every worker (``client.run``) when a job's plan is made, so that the plan records
    the precision the workers will run at.

    Parameters
    ----------
    device : str
        The job's device setting (``"auto"`` resolves here, as :func:`resolve_device` does).

    Returns
    -------
    dict
        ``device`` (resolved), ``precision`` (``"auto"`` resolved on it), ``native_bf16`` (the
        CPU's verdict, or None on a GPU) and ``reason``.
    """
    from xterrafm.models.cpu_bf16 import cpu_bf16

    resolved = resolve_device(device)
    if resolved != "cpu":
        return {"device": resolved, "precision": resolve_precision("auto", resolved),
                "native_bf16": None, "reason": f"device {resolved}"}
    verdict = cpu_bf16()
    return {"device": resolved, "precision": resolve_precision("auto", resolved, verdict.native),
            "native_bf16": verdict.native, "reason": verdict.reason}


def resolve_batch_size(batch_size: int | None, device: str) -> int:
    """Windows per forward pass: the given value, else 8 on CPU and 64 on CUDA."""
    if batch_size:
        return int(batch_size)
    return 64 if device.startswith("cuda") else 8


def _dask_threads_in_this_process() -> int:
    try:
        with import_gate():
            from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        pass
    with import_gate():
        import dask

    n = dask.config.get("num_workers", None)
    return max(1, int(n)) if n else max(1, os.cpu_count() or 1)


def default_torch_threads() -> int:
    """Torch threads that keep ``dask threads x torch threads`` within this process's cores.

    In a distributed worker whose environment sets ``OMP_NUM_THREADS`` (nannies set it to 1 by
    default, having split the cores among workers), that value; otherwise
    ``cores // dask threads`` (at least 1).
    """
    in_worker = True
    try:
        with import_gate():
            from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        in_worker = False
    if in_worker and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // _dask_threads_in_this_process())


#: glibc ``mallopt`` parameters and the values :func:`tune_allocator` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 64 << 20
_TRIM_THRESHOLD_BYTES = 256 << 20


def tune_allocator() -> bool:
    """Undo the effect of a small ``MALLOC_TRIM_THRESHOLD_`` on torch's allocations.

    Only acts on glibc systems in processes whose environment sets ``MALLOC_TRIM_THRESHOLD_``
    below 64 MiB (dask nannies set 64 KiB): there it sets glibc's mmap threshold to 64 MiB and
    its trim threshold to 256 MiB (see the module docstring). Elsewhere it changes nothing.

    Returns
    -------
    bool
        Whether the allocator was changed.
    """
    value = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    if not value.isdigit() or int(value) >= _MMAP_THRESHOLD_BYTES:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1)
    except (OSError, AttributeError):  # not glibc
        return False
    return ok


def configure_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads for this process once (later calls keep the first value),
    and tune its allocator (:func:`tune_allocator`).

    Parameters
    ----------
    n : int, optional
        Threads; default :func:`default_torch_threads`.

    Returns
    -------
    int
        The number of threads torch uses in this process.
    """
    with import_gate():
        import torch

    with _LOCK:
        if not _THREADS_SET:
            if tune_allocator():
                _STATS["allocator_tuned"] += 1
            want = int(n) if n else default_torch_threads()
            torch.set_num_threads(want)
            _THREADS_SET.append(want)
        return torch.get_num_threads()


def get_model(spec: ModelSpec) -> tuple[Any, str]:
    """The process's model for ``spec``, built on first use.

    Parameters
    ----------
    spec : ModelSpec
        Model description; ``spec.weights_sha256`` must match what gets loaded (empty string:
        accept whatever loads, used when describing a model before the graph exists).

    Returns
    -------
    model : xterrafm.models.TerraFM
        In eval mode on the resolved device, with the resolved precision.
    device : str
        The device it sits on.

    Raises
    ------
    WeightsMismatchError
        The weights found in this process have a different SHA-256 than the spec records
        (the file changed, or workers see a different file).
    """
    device = resolve_device(spec.device)
    precision = resolve_precision(spec.precision, device)
    key = (*spec.cache_key, device, precision)
    model = _MODELS.get(key)
    if model is not None:
        return model, device
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from xterrafm.weights import load_model

            known = None
            if spec.weights_stamp and spec.weights not in (None, "hf") and spec.weights_sha256:
                st = os.stat(spec.weights)
                if (st.st_size, st.st_mtime_ns) == tuple(spec.weights_stamp):
                    known = spec.weights_sha256  # the file the graph's hash was taken of
            model = load_model(spec.model, spec.weights, device=device, precision=precision,
                               seed=spec.seed, sha256=known)
            _STATS["weights_hashed"] += int(known is None)
            if spec.weights_sha256 and model.weights_sha256 != spec.weights_sha256:
                raise WeightsMismatchError(
                    f"weights {spec.weights!r} in process {os.getpid()} have sha256 "
                    f"{model.weights_sha256}, but the graph was built for "
                    f"{spec.weights_sha256}: the file changed or workers see another file")
            # fold the patch embedding now, once, rather than in the first forward pass of
            # every thread that starts together (about half a second each for ViT-B)
            model.prepare(spec.modality)
            _MODELS[key] = model
            _STATS["models_built"] += 1
    return model, device


def preload(spec: ModelSpec) -> int:
    """Build (or find) this process's model for ``spec`` ahead of its first block.

    Submitted once per worker when a job starts, so that loading the weights overlaps with the
    first reads instead of delaying the first forward pass (the build includes folding the
    patch embedding, :meth:`xterrafm.models.TerraFM.prepare`). Torch threads are left to the
    block functions.

    Returns
    -------
    int
        This process's id.
    """
    get_model(spec)
    record(preloads=1)
    return os.getpid()


def warm_readers() -> int:
    """Load the numba kernels of the coarse-band reads (:func:`xterrafm.io.upsample.warm_up`).

    Submitted once per worker while a job is planned
    (:func:`xterrafm.embedding.scheduling.start_reader_warmup`), as a task of its own: it runs
    while the client hashes the weights, before the model build and the first reads.

    Returns
    -------
    int
        This process's id.
    """
    from xterrafm.io.upsample import warm_up

    warm_up()
    record(reader_warmups=1)
    return os.getpid()


def record(**counts: int) -> None:
    """Add to this process's counters (e.g. ``windows=8``, ``forward_calls=1``)."""
    with _LOCK:
        _STATS.update(counts)


def stats() -> dict[str, Any]:
    """This process's counters plus the pid, cached model keys and torch threads."""
    with _LOCK:
        out: dict[str, Any] = dict(_STATS)
        out["pid"] = os.getpid()
        out["cached_models"] = [list(map(str, k)) for k in _MODELS]
        out["torch_threads"] = _THREADS_SET[0] if _THREADS_SET else None
    return out


def clear_cache(reset_stats: bool = True) -> None:
    """Drop cached models (and counters) of this process."""
    with _LOCK:
        _MODELS.clear()
        if reset_stats:
            _STATS.clear()
