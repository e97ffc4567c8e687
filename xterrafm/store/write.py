"""Writing embedding stores: the template, then the blocks in waves, resumably.

:func:`embed_to_zarr` makes the plan of a cube's embedding once
(:func:`xterrafm.embedding.api.embed_and_plan`) and hands it to :func:`write_plan`, which
starts building the model on every worker, writes (or checks) the template
(:func:`prepare_store`), and computes the blocks without a completion marker
(:func:`pending_blocks`) in waves of at most :func:`default_wave_size` blocks
(:func:`write_blocks`). Each block is stored into its region, then its marker is written
(layout: :mod:`xterrafm.store.layout`). A run that stops part way leaves markers for the
finished blocks; the same call again computes only the others.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.embedding.api import embed_and_plan
from xterrafm.embedding.plan import EmbedPlan
from xterrafm.embedding.scheduling import get_client, keep_annotations, start_preload
from xterrafm.embedding.settings import EmbedSettings, settings_docstring, settings_parameters
from xterrafm.embedding.workers import (
    DEFAULT_NO_WORKER_TIMEOUT_S,
    gather_with_watch,
    install_worker_setup,
)
from xterrafm.errors import NotAStoreError, StoreMismatchError
from xterrafm.store.counts import EmbedSummary, StoreCounts, Tally
from xterrafm.store.layout import (
    FINGERPRINT_ATTR,
    META_DIR,
    VAR,
    block_name,
    fingerprint_diff,
    marker_paths,
    read_fingerprint,
    store_fs,
    store_path,
    write_json,
)
from xterrafm.store.status import done_tally

with import_gate():
    import dask
    import dask.array as da
    import numpy as np
    import xarray as xr

__all__ = [
    "STORE_SALT",
    "default_wave_size",
    "embed_to_zarr",
    "pending_blocks",
    "prepare_store",
    "write_blocks",
    "write_plan",
]


#: Salt of the store writer's graphs (see :func:`xterrafm.embedding.graph.embed_dask`).
STORE_SALT = "store"


def _block_grid(emb: xr.DataArray) -> tuple[int, ...]:
    return tuple(len(c) for c in emb.data.chunks)


def _all_blocks(emb: xr.DataArray) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*_block_grid(emb))]


def _cells_total(emb: xr.DataArray) -> int:
    return int(emb.size // emb.sizes["embedding"])


def _regular(emb: xr.DataArray) -> xr.DataArray:
    """Zarr needs regular chunks (the last may be shorter): rechunk where dask's are not."""
    fixes = {}
    for dim, chunks in zip(emb.dims, emb.data.chunks, strict=True):
        if len(chunks) > 1 and (len(set(chunks[:-1])) > 1 or chunks[-1] > chunks[0]):
            fixes[dim] = 1 if dim == "time" else max(chunks)
    return emb.chunk(fixes) if fixes else emb


def prepare_store(emb: xr.DataArray, plan: EmbedPlan, store: str, *, overwrite: bool = False,
                  zarr_format: int = 3) -> str:
    """Make ``store`` ready to receive the blocks of ``emb``: a new template, or a resume.

    Parameters
    ----------
    emb : DataArray
        Lazy ``(time, embedding, y, x)`` embeddings of ``plan``.
    plan : EmbedPlan
        Its plan (the fingerprint is ``plan.fingerprint``).
    store : str or path
        Local path or fsspec URL of the Zarr store.
    overwrite : bool
        Delete an existing store first (its blocks are lost).
    zarr_format : int
        Zarr format of a new store (3 by default).

    Returns
    -------
    str
        ``"new"`` (template written) or ``"resume"`` (existing store with the same fingerprint).

    Raises
    ------
    StoreMismatchError
        The store was written with other settings (the message lists them).
    NotAStoreError
        The path holds something that is not an embedding store, or blocks but no complete
        template.
    """
    store = str(store)
    fs, root = store_fs(store)
    fp = plan.fingerprint
    meta = store_path(root, META_DIR)
    if fs.exists(root) and overwrite:
        fs.rm(root, recursive=True)
    if fs.exists(root) and fs.ls(root):
        old = read_fingerprint(store)
        if old is None:
            raise NotAStoreError(
                f"{store} exists and is not an xterrafm embedding store (no {FINGERPRINT_ATTR} "
                "in its Zarr group attrs); choose another path or pass overwrite=True")
        diffs = fingerprint_diff(old, fp)
        if diffs:
            raise StoreMismatchError(
                f"refusing to resume into {store}: it was written with different settings: "
                + "; ".join(diffs) + ". Use the same settings, another store, or overwrite=True.")
        if fs.exists(store_path(meta, "template.done")):
            return "resume"
        if marker_paths(fs, root):
            raise NotAStoreError(f"{store} has written blocks but no complete template; "
                                     "pass overwrite=True to start again")
    # the template needs only shape, chunks and dtype: a placeholder of the same chunks spares
    # xarray materialising the embedding graph just to write metadata
    placeholder = da.empty(emb.shape, chunks=emb.data.chunks, dtype=emb.dtype)
    ds = emb.copy(data=placeholder).to_dataset(name=VAR)
    ds.attrs[FINGERPRINT_ATTR] = json.dumps(fp, sort_keys=True)
    enc = {VAR: {"chunks": [c[0] for c in emb.data.chunks]}}
    if "spatial_ref" in ds.coords:
        enc[VAR]["grid_mapping"] = "spatial_ref"  # CRS survives decode_coords="all"
    with warnings.catch_warnings():
        # consolidated metadata is a zarr-python extension for v3; readers that lack it list
        # the store instead. It spares xr.open_zarr a listing.
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(store, mode="w", compute=False, zarr_format=zarr_format, consolidated=True,
                   encoding=enc)
    fs.makedirs(store_path(meta, "blocks"), exist_ok=True)  # after to_zarr(mode="w") cleared it
    fs.pipe_file(store_path(meta, "template.done"), b"ok")
    return "new"


def pending_blocks(emb: xr.DataArray, store: str) -> list[tuple[int, ...]]:
    """Block indices of ``emb`` without a completion marker in ``store``."""
    fs, root = store_fs(str(store))
    done = {p.rsplit("/", 1)[-1][:-5] for p in marker_paths(fs, root)}
    return [b for b in _all_blocks(emb) if block_name(b) not in done]


def _write_region(block: np.ndarray, *, store: str, emb_axis: int,
                  block_info: dict | None = None) -> np.ndarray:
    """Store one block into its region, then write its completion marker.

    Returns an array with the block's dimensions, length 1 along each except ``emb_axis``
    (length 2): cells embedded and cells empty.
    """
    with import_gate():
        import zarr

    loc = block_info[0]["array-location"]
    idx = block_info[0]["chunk-location"]
    arr = zarr.open_array(store=store, path=VAR, mode="r+")
    arr[tuple(slice(a, b) for a, b in loc)] = block
    cells = np.isfinite(block).all(axis=emb_axis)
    n_ok = int(cells.sum())
    n_empty = int(cells.size - n_ok)
    fs, root = store_fs(store)
    write_json(fs, store_path(root, META_DIR, "blocks", block_name(idx) + ".json"),
               {"cells_embedded": n_ok, "cells_empty": n_empty,
                "region": [list(r) for r in loc]})
    shape = [1] * block.ndim
    shape[emb_axis] = 2
    return np.array([n_ok, n_empty], dtype=np.int64).reshape(shape)


def _written_counts(emb: xr.DataArray, store: str, resources: dict | None) -> da.Array:
    data = emb.data
    emb_axis = emb.dims.index("embedding")
    chunks = tuple((2,) if i == emb_axis else (1,) * len(c) for i, c in enumerate(data.chunks))
    ctx = dask.annotate(resources=resources) if resources else contextlib.nullcontext()
    with ctx:
        return da.map_blocks(_write_region, data, chunks=chunks, dtype=np.int64,
                             meta=np.empty((0,) * data.ndim, dtype=np.int64),
                             name="terrafm-write-" + dask.base.tokenize(data.name, store),
                             store=store, emb_axis=emb_axis)


def default_wave_size(client: Any = None) -> int:
    """Blocks per wave: 4 per dask thread, at least 8.

    Enough to keep every thread busy while the next blocks are read, and few enough that the
    scheduler does not read far ahead (worker memory would then grow with the scene).
    Threads are those of the client's workers, else dask's ``num_workers`` setting, else the
    cores of this machine.
    """
    if client is not None:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    else:
        threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    return max(8, 4 * threads)


def _waves(items: list, size: int | None) -> Iterable[list]:
    if not size or size >= len(items):
        if items:
            yield items
        return
    for i in range(0, len(items), size):
        yield items[i:i + size]


def write_blocks(emb: xr.DataArray, store: str, blocks: list[tuple[int, ...]] | None = None, *,
                 resources: dict | None = None, client: Any = None,
                 wave_size: int | str | None = "auto",
                 on_wave: Callable[[EmbedSummary], Any] | None = None, progress: bool = True,
                 summary: EmbedSummary | None = None,
                 no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S) -> EmbedSummary:
    """Compute the given blocks of ``emb`` and write each into its region of ``store``.

    Parameters
    ----------
    emb : DataArray
        Lazy embeddings whose template is already in ``store`` (:func:`prepare_store`).
    store : str
        Local path or fsspec URL.
    blocks : list of tuple, optional
        Block indices to write (default: :func:`pending_blocks`).
    resources : dict, optional
        Resource request of the write tasks (the plan's, so that they run beside the model).
    client : distributed.Client, optional
        Compute on this client (default: the current one, else the local dask scheduler).
    wave_size : int, "auto" or None
        Submit at most this many blocks at a time (``"auto"``: :func:`default_wave_size`;
        None: all at once).
    on_wave : callable, optional
        Called with the running :class:`EmbedSummary` after each wave (a hook for batch jobs:
        logging, checkpoints, stopping by raising).
    progress : bool
        Show a progress bar over blocks (tqdm), updated as blocks finish.
    summary : EmbedSummary, optional
        Summary to update in place, block by block, so that it is right when a block fails
        (default: a new one).
    no_worker_timeout : float
        With a client: seconds the cluster may have no worker at all before the write fails
        with :class:`~xterrafm.embedding.workers.WorkersLostError` naming what the workers
        reported (a killed worker's nanny restarts it within seconds).

    Returns
    -------
    EmbedSummary
    """
    with import_gate():
        from tqdm.auto import tqdm

    store = str(store)
    blocks = pending_blocks(emb, store) if blocks is None else list(blocks)
    if summary is None:
        summary = EmbedSummary(store=store, level=str(emb.attrs.get("level")),
                               counts=StoreCounts(len(_all_blocks(emb)), _cells_total(emb)))
    client = get_client(client)
    if wave_size == "auto":
        wave_size = default_wave_size(client)
    counts = _written_counts(emb, store, resources)
    axis = emb.dims.index("embedding")

    def add(result: np.ndarray) -> None:
        done = Tally(1, int(result.take(0, axis=axis).sum()), int(result.take(1, axis=axis).sum()))
        summary.counts.written = summary.counts.written + done

    bar = tqdm(total=len(blocks), desc="embedding blocks", unit="block", disable=not progress)
    try:
        for wave in _waves(blocks, wave_size):
            parts = [counts.blocks[b] for b in wave]
            with keep_annotations():
                if client is not None:
                    _compute_on_client(client, parts, add, bar, no_worker_timeout)
                else:
                    with _TaskBar(bar, counts.name):
                        for result in dask.compute(*parts):
                            add(result)
            summary.waves += 1
            if on_wave is not None:
                on_wave(summary)
    finally:
        bar.close()
    return summary


def _compute_on_client(client: Any, parts: list, add: Callable[[np.ndarray], None],
                       bar: Any, no_worker_timeout: float) -> None:
    # one submission per block, earlier blocks first: the scheduler then reads block by block,
    # and the first forward passes start after one block's reads instead of the whole wave's
    futures = [client.compute(p, priority=len(parts) - i) for i, p in enumerate(parts)]

    def done(result: np.ndarray) -> None:
        add(result)
        bar.update(1)

    try:
        gather_with_watch(client, futures, done, no_worker_timeout=no_worker_timeout)
    finally:
        client.cancel([f for f in futures if not f.done()])


class _TaskBar(dask.callbacks.Callback):
    """Advance a tqdm bar when a write task of this store finishes (local schedulers)."""

    def __init__(self, bar: Any, prefix: str) -> None:
        super().__init__()
        self._bar, self._prefix = bar, prefix

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(self._prefix):
            self._bar.update(1)


def write_plan(emb: xr.DataArray, plan: EmbedPlan, store: str, *, summary: EmbedSummary,
               client: Any = None, overwrite: bool = False, wave_size: int | str | None = "auto",
               on_wave: Callable[[EmbedSummary], Any] | None = None, progress: bool = True,
               zarr_format: int = 3,
               no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S) -> EmbedSummary:
    """Write the embeddings ``emb`` of ``plan`` into ``store`` (template, then missing blocks).

    ``summary`` is updated in place as blocks finish, so that a caller catching a failure
    still holds what was found and written. Arguments as for :func:`embed_to_zarr`.
    """
    emb = _regular(emb)
    store = str(store)
    if client is not None:
        install_worker_setup(client)
    # workers start building the model now, while the template is written and blocks are read
    preloading = start_preload(plan.spec, client, plan.resources) if client is not None else []
    try:
        summary.state = prepare_store(emb, plan, store, overwrite=overwrite,
                                      zarr_format=zarr_format)
        todo = pending_blocks(emb, store)
        if not todo and client is not None:
            client.cancel(preloading)
        elif todo and client is None:  # local schedulers: a thread here, only if needed
            preloading = start_preload(plan.spec, None, plan.resources)
        fs, root = store_fs(store)
        everything = _all_blocks(emb)
        finished = {block_name(b) for b in set(everything) - set(todo)}
        summary.counts = StoreCounts(len(everything), _cells_total(emb),
                                     found=done_tally(fs, root, finished))
        write_blocks(emb, store, todo, resources=plan.resources, client=client,
                     wave_size=wave_size, on_wave=on_wave, progress=progress, summary=summary,
                     no_worker_timeout=no_worker_timeout)
    finally:
        # a preload thread of this process must not outlive the job: a thread still inside
        # torch when the interpreter exits aborts the process; futures are held until here,
        # since releasing one may cancel its task
        for handle in preloading:
            if isinstance(handle, threading.Thread):
                handle.join()
        del preloading
    return summary


def embed_to_zarr(cube: xr.DataArray | xr.Dataset, store: str | os.PathLike,
                  settings: EmbedSettings | None = None, *, client: Any = None,
                  overwrite: bool = False, wave_size: int | str | None = "auto",
                  on_wave: Callable[[EmbedSummary], Any] | None = None, progress: bool = True,
                  zarr_format: int = 3, no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S,
                  **options: Any) -> EmbedSummary:
    """Embed a cube into a Zarr store, block by block, resumably.

    Parameters
    ----------
    cube : DataArray or Dataset
        Input cube (see :func:`xterrafm.embed`).
    store : str or path
        Local path or fsspec URL of the Zarr store.
    settings : EmbedSettings, optional
        All embedding settings at once; keyword arguments below override its fields.
    client : distributed.Client, optional
        Compute on this client (default: the current one, else the local dask scheduler).
    overwrite : bool
        Replace an existing store instead of resuming into it.
    wave_size : int, "auto" or None
        Blocks per submitted wave; bounds the graph and worker memory of large jobs
        (``"auto"``: :func:`default_wave_size`; None: all at once).
    on_wave : callable, optional
        Called with the running :class:`~xterrafm.store.counts.EmbedSummary` after each wave.
    progress : bool
        Show a progress bar (False silences it).
    zarr_format : int
        Zarr format of a new store (default 3).
    no_worker_timeout : float
        With a client: seconds the cluster may have no worker before the job fails with
        :class:`~xterrafm.embedding.workers.WorkersLostError`, which names what the workers
        reported (a killed worker's nanny restarts it within seconds).
{settings}

    Returns
    -------
    EmbedSummary
        Blocks found complete and written, cells embedded and empty.

    Raises
    ------
    StoreMismatchError
        ``store`` holds embeddings written with other settings, or something else.
    """
    t0 = time.perf_counter()
    client = get_client(client)
    settings = EmbedSettings.from_options(settings, **options)
    emb, plan = embed_and_plan(cube, settings, client=client, salt=STORE_SALT)
    summary = EmbedSummary(store=str(store), level=plan.level)
    write_plan(emb, plan, str(store), summary=summary, client=client, overwrite=overwrite,
               wave_size=wave_size, on_wave=on_wave, progress=progress, zarr_format=zarr_format,
               no_worker_timeout=no_worker_timeout)
    summary.seconds = time.perf_counter() - t0
    return summary


embed_to_zarr.__doc__ = embed_to_zarr.__doc__.format(settings=settings_docstring())
embed_to_zarr.__signature__ = inspect.signature(embed_to_zarr).replace(parameters=[
    *list(inspect.signature(embed_to_zarr).parameters.values())[:-1], *settings_parameters()])
