"""Writing embedding stores: the template, then the blocks, resumably.

:func:`embed_to_zarr` makes the plan of a cube's embedding once
(:func:`xterrafm.embedding.api.embed_and_plan`), on the chunk grid of the store when it
resumes one (:func:`adopt_store_grid`), and hands it to :func:`write_plan`, which starts
building the model on every worker, writes (or checks) the template
(:func:`~xterrafm.store.template.prepare_store`), sorts the blocks marked done into trusted
and damaged (:func:`resume_state`: a damaged block's chunks are missing or torn) and computes
the others, at most a wave of them in flight (:func:`write_blocks`). Each block is encoded in
the store's data type (:mod:`xterrafm.store.encoding`) and stored into its region, then its
marker is written with the size and CRC-32 of every chunk it wrote
(:mod:`xterrafm.store.markers`). A run that stops part way leaves markers for the finished
blocks; the same call again computes only the
others, and repairs damaged ones. A STAC Item describing the store is written after every run
(:mod:`xterrafm.store.stac_item`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.embedding.api import embed_and_plan
from xterrafm.embedding.plan import EmbedPlan
from xterrafm.embedding.scheduling import get_client, settle_preload, start_preload
from xterrafm.embedding.settings import EmbedSettings, settings_docstring, settings_parameters
from xterrafm.embedding.workers import DEFAULT_NO_WORKER_TIMEOUT_S
from xterrafm.errors import StoreError
from xterrafm.store.conventions import input_sources
from xterrafm.store.counts import EmbedSummary, StoreCounts, Tally
from xterrafm.store.encoding import StoreEncoding
from xterrafm.store.layout import VAR, region_name, store_chunks, store_fs
from xterrafm.store.markers import (
    check_markers,
    chunk_record,
    read_markers,
    remove_markers,
    write_marker,
)
from xterrafm.store.stac_item import write_store_item
from xterrafm.store.template import DEFAULT_ZARR_FORMAT, prepare_store
from xterrafm.store.usage import RunUsage
from xterrafm.store.waves import compute_blocks, default_wave_size

with import_gate():
    import dask
    import dask.array as da
    import numpy as np
    import xarray as xr

__all__ = [
    "STORE_SALT",
    "ResumeState",
    "adopt_store_grid",
    "default_wave_size",
    "embed_to_zarr",
    "pending_blocks",
    "prepare_store",
    "resume_state",
    "write_blocks",
    "write_plan",
]

log = logging.getLogger(__name__)

#: Salt of the store writer's graphs (see :func:`xterrafm.embedding.graph.embed_dask`).
STORE_SALT = "store"


def _all_blocks(emb: xr.DataArray) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*(len(c) for c in emb.data.chunks))]


def _region(emb: xr.DataArray, idx: tuple[int, ...]) -> list[tuple[int, int]]:
    out = []
    for i, chunks in zip(idx, emb.data.chunks, strict=True):
        start = int(sum(chunks[:i]))
        out.append((start, start + int(chunks[i])))
    return out


def _names(emb: xr.DataArray, blocks: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], str]:
    return {b: region_name(_region(emb, b), emb.dims) for b in blocks}


def _cells_total(emb: xr.DataArray) -> int:
    return int(emb.size // emb.sizes["embedding"])


def _regular(emb: xr.DataArray) -> xr.DataArray:
    """Zarr needs regular chunks (the last may be shorter): rechunk where dask's are not."""
    fixes = {}
    for dim, chunks in zip(emb.dims, emb.data.chunks, strict=True):
        if len(chunks) > 1 and (len(set(chunks[:-1])) > 1 or chunks[-1] > chunks[0]):
            fixes[dim] = 1 if dim == "time" else max(chunks)
    return emb.chunk(fixes) if fixes else emb


def adopt_store_grid(settings: EmbedSettings, store: str) -> EmbedSettings:
    """``settings`` with ``block_cells`` set to the chunk grid of an existing store.

    A resumed run must write the store's chunks, whatever read chunks it was given (the
    default blocks follow them): other blocks would each cover parts of several chunks,
    which concurrent writers would then share.
    """
    chunks = store_chunks(store)
    if chunks is None or "y" not in chunks or "x" not in chunks:
        return settings
    cells = (chunks["y"], chunks["x"])
    if settings.block_cells not in (None, cells):
        log.info("resuming %s on its chunk grid of %s cells per block (not %s)", store, cells,
                 settings.block_cells)
    return settings if settings.block_cells == cells else settings.replace(block_cells=cells)


def _match_store_chunks(emb: xr.DataArray, store: str) -> xr.DataArray:
    """``emb`` rechunked to the store's chunks where they differ (e.g. along time)."""
    chunks = store_chunks(store)
    if not chunks:
        return emb
    want = {d: chunks[d] for d in emb.dims if d in chunks}
    have = {d: c[0] for d, c in zip(emb.dims, emb.data.chunks, strict=True)}
    diff = {d: n for d, n in want.items() if have[d] != n and emb.sizes[d] > min(have[d], n)}
    return emb.chunk(diff) if diff else emb


@dataclass
class ResumeState:
    """What a store already holds of ``emb``'s blocks.

    Attributes
    ----------
    found : dict
        Marker name -> marker of the blocks done and intact.
    damaged : dict
        Marker name -> why it is not trusted (a chunk missing, torn or altered).
    todo : list of tuple
        Block indices to write: no marker, or a damaged one.
    """

    found: dict[str, dict] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)
    todo: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def found_tally(self) -> Tally:
        """Blocks found intact and their cells."""
        return Tally(len(self.found),
                     sum(int(m.get("cells_embedded", 0)) for m in self.found.values()),
                     sum(int(m.get("cells_empty", 0)) for m in self.found.values()))


def resume_state(emb: xr.DataArray, store: str, *, verify: str = "size") -> ResumeState:
    """Sort the blocks of ``emb`` into found (marker and intact chunks), damaged and to do.

    Parameters
    ----------
    emb : DataArray
        Lazy embeddings on the store's chunk grid.
    store : str
        Local path or fsspec URL.
    verify : {"size", "checksum"}
        How closely the chunks of each marker are checked (:func:`~xterrafm.store.markers.
        check_markers`).
    """
    fs, root = store_fs(str(store))
    names = _names(emb, _all_blocks(emb))
    check = check_markers(fs, root, read_markers(fs, root, names.values()), verify=verify)
    todo = [b for b, n in names.items() if n not in check.trusted]
    return ResumeState(found=check.trusted, damaged=check.damaged, todo=todo)


def pending_blocks(emb: xr.DataArray, store: str, *, verify: str = "size") -> list[tuple[int, ...]]:
    """Block indices of ``emb`` without a trusted completion marker in ``store``."""
    return resume_state(emb, store, verify=verify).todo


def _write_region(block: np.ndarray, *, store: str, dims: tuple[str, ...],
                  encoding: StoreEncoding, block_info: dict | None = None) -> np.ndarray:
    """Encode one block, store it into its region, then write its completion marker.

    Returns an array with the block's dimensions, length 1 along each except ``embedding``
    (length 2): cells embedded and cells empty.
    """
    with import_gate():
        import zarr

    loc = [tuple(int(v) for v in r) for r in block_info[0]["array-location"]]
    axis = dims.index("embedding")
    fs, root = store_fs(store)
    chunks = {}
    for name, data in encoding.encode(block, axis).items():
        arr = zarr.open_array(store=store, path=name, mode="r+")
        sel = loc if name == VAR else [r for i, r in enumerate(loc) if i != axis]
        cidx = tuple(a // c for (a, _), c in zip(sel, arr.chunks, strict=True))
        if any(a % c or b - a > c for (a, b), c in zip(sel, arr.chunks, strict=True)):
            raise StoreError(f"block {loc} of {store} is not one chunk of {name} (chunks "
                             f"{arr.chunks}); resume on the store's grid")
        arr[tuple(slice(a, b) for a, b in sel)] = data
        key = f"{name}/{arr.metadata.encode_chunk_key(cidx)}"
        chunks[key] = chunk_record(fs, root, key)
    cells = np.isfinite(block).all(axis=axis)
    n_ok = int(cells.sum())
    n_empty = int(cells.size - n_ok)
    write_marker(fs, root, region_name(loc, dims), region=loc, embedded=n_ok, empty=n_empty,
                 chunks=chunks)
    shape = [1] * block.ndim
    shape[axis] = 2
    return np.array([n_ok, n_empty], dtype=np.int64).reshape(shape)


def _written_counts(emb: xr.DataArray, store: str, encoding: StoreEncoding,
                    resources: dict | None) -> da.Array:
    data = emb.data
    emb_axis = emb.dims.index("embedding")
    chunks = tuple((2,) if i == emb_axis else (1,) * len(c) for i, c in enumerate(data.chunks))
    with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
        return da.map_blocks(_write_region, data, chunks=chunks, dtype=np.int64,
                             meta=np.empty((0,) * data.ndim, dtype=np.int64),
                             name="terrafm-write-" + dask.base.tokenize(data.name, store,
                                                                          encoding),
                             store=store, dims=tuple(emb.dims), encoding=encoding)


def write_blocks(emb: xr.DataArray, store: str, blocks: list[tuple[int, ...]] | None = None, *,
                 resources: dict | None = None, client: Any = None,
                 wave_size: int | str | None = "auto",
                 on_wave: Callable[[EmbedSummary], Any] | None = None,
                 stop_check: Callable[[], None] | None = None, progress: bool = True,
                 summary: EmbedSummary | None = None, encoding: StoreEncoding | None = None,
                 no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S) -> EmbedSummary:
    """Compute the given blocks of ``emb`` and write each into its region of ``store``.

    Parameters
    ----------
    emb : DataArray
        Lazy embeddings whose template is already in ``store``
        (:func:`~xterrafm.store.template.prepare_store`), on the store's chunk grid.
    store : str
        Local path or fsspec URL.
    blocks : list of tuple, optional
        Block indices to write (default: :func:`pending_blocks`).
    resources : dict, optional
        Resource request of the write tasks (the plan's, so that they run beside the model).
    client : distributed.Client, optional
        Compute on this client (default: the current one, else the local dask scheduler).
    wave_size : int, "auto" or None
        At most this many blocks in flight (``"auto"``: :func:`default_wave_size`; None: all
        at once). On a client, a rolling window: the next block starts as soon as one
        finishes; on local schedulers, consecutive waves.
    on_wave : callable, optional
        Called with the running :class:`EmbedSummary` after every ``wave_size`` finished
        blocks and after the last one (a hook for batch jobs: logging, checkpoints, stopping
        by raising, after which no further block starts).
    stop_check : callable, optional
        With a distributed client, also called while blocks run (about every 20 ms), so that
        a stop request (Ctrl-C, SIGTERM) ends the call even when no block finishes any more.
    progress : bool
        Show a progress bar over blocks (tqdm), updated as blocks finish.
    summary : EmbedSummary, optional
        Summary to update in place, block by block, so that it is right when a block fails
        (default: a new one). When the call ends, failed or not, ``counts.written`` is set from
        the markers this call left in the store: what it wrote, exactly (on dask's threaded
        scheduler the blocks still running when a block fails are waited for first; with a
        distributed client, a block whose task was already running may still land after the
        call, and the next run finds it).
    encoding : StoreEncoding, optional
        The store's data type (default float32; it must be the one of the template).
    no_worker_timeout : float
        With a client: seconds the cluster may have no worker at all before the write fails
        with :class:`~xterrafm.errors.WorkersLostError` naming what the workers reported (a
        killed worker's nanny restarts it within seconds).

    Returns
    -------
    EmbedSummary
    """
    with import_gate():
        from tqdm.auto import tqdm

    store = str(store)
    encoding = encoding or StoreEncoding()
    blocks = pending_blocks(emb, store) if blocks is None else list(blocks)
    if summary is None:
        summary = EmbedSummary(store=store, level=str(emb.attrs.get("level")),
                               counts=StoreCounts(len(_all_blocks(emb)), _cells_total(emb)))
    client = get_client(client)
    if wave_size == "auto":
        wave_size = default_wave_size(client)
    counts = _written_counts(emb, store, encoding, resources)
    axis = emb.dims.index("embedding")
    before = summary.counts.written

    def add(result: np.ndarray) -> None:
        done = Tally(1, int(result.take(0, axis=axis).sum()), int(result.take(1, axis=axis).sum()))
        summary.counts.written = summary.counts.written + done
        if client is not None:
            bar.update(1)

    def wave_done() -> None:
        summary.waves += 1
        if on_wave is not None:
            on_wave(summary)

    bar = tqdm(total=len(blocks), desc="embedding blocks", unit="block", disable=not progress)
    try:
        compute_blocks([counts.blocks[b] for b in blocks], add, wave_size=wave_size,
                       on_wave=wave_done, stop_check=stop_check, client=client,
                       tick=lambda: bar.update(1),
                       task_prefix=counts.name, no_worker_timeout=no_worker_timeout)
    finally:
        bar.close()
        fs, root = store_fs(store)
        left = read_markers(fs, root, _names(emb, blocks).values())
        summary.counts.written = before + Tally(
            len(left), sum(int(m.get("cells_embedded", 0)) for m in left.values()),
            sum(int(m.get("cells_empty", 0)) for m in left.values()))
    return summary


def write_plan(emb: xr.DataArray, plan: EmbedPlan, store: str, *, summary: EmbedSummary,
               client: Any = None, overwrite: bool = False, wave_size: int | str | None = "auto",
               on_wave: Callable[[EmbedSummary], Any] | None = None,
               stop_check: Callable[[], None] | None = None, progress: bool = True,
               zarr_format: int = DEFAULT_ZARR_FORMAT, dtype: str = "float32",
               verify: str = "size", sources: Sequence[str] | None = None,
               no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S) -> EmbedSummary:
    """Write the embeddings ``emb`` of ``plan`` into ``store`` (template, then missing blocks),
    then the store's STAC Item.

    ``plan`` must have been made with ``client`` (:func:`~xterrafm.embedding.plan.make_plan`
    sets the workers up). ``summary`` is updated in place as blocks finish, so that a caller
    catching a failure still holds what was found, repaired and written. Arguments as for
    :func:`embed_to_zarr`; ``stop_check`` as for :func:`write_blocks`.
    """
    encoding = StoreEncoding(dtype)
    emb = _regular(emb)
    store = str(store)
    # workers start building the model now, while the template is written and blocks are read
    preloading = start_preload(plan.spec, client, plan.resources) if client is not None else []
    usage = RunUsage.start(client)
    failed, prepared = True, False
    try:
        summary.state = prepare_store(emb, plan, store, overwrite=overwrite,
                                      zarr_format=zarr_format, encoding=encoding,
                                      sources=sources)
        prepared = True  # from here on the Item describes this store
        emb = _match_store_chunks(emb, store)
        state = resume_state(emb, store, verify=verify)
        if state.damaged:
            log.warning("%s: %d block(s) marked done have missing or torn chunks and are "
                        "written again: %s", store, len(state.damaged),
                        "; ".join(f"{n}: {why}" for n, why in list(state.damaged.items())[:5]))
            fs, root = store_fs(store)
            remove_markers(fs, root, state.damaged)  # they vouch for nothing any more
        if not state.todo and client is not None:
            settle_preload(preloading)
        elif state.todo and client is None:  # local schedulers: a thread here, only if needed
            preloading = start_preload(plan.spec, None, plan.resources)
        summary.counts = StoreCounts(len(_all_blocks(emb)), _cells_total(emb),
                                     found=state.found_tally, repaired=len(state.damaged))
        write_blocks(emb, store, state.todo, resources=plan.resources, client=client,
                     wave_size=wave_size, on_wave=on_wave, stop_check=stop_check,
                     progress=progress, summary=summary,
                     encoding=encoding, no_worker_timeout=no_worker_timeout)
        failed = False
    finally:
        # a preload thread of this process must not outlive the job: a thread still inside
        # torch when the interpreter exits aborts the process; futures are held until here,
        # since releasing one may cancel its task
        for handle in preloading:
            if isinstance(handle, threading.Thread):
                handle.join()
        del preloading
        if prepared:
            _write_item(store, plan, encoding, summary,
                        usage.stop(client, device=plan.settings.device), sources, failed)
    return summary


def _write_item(store: str, plan: EmbedPlan, encoding: StoreEncoding, summary: EmbedSummary,
                usage: dict, sources: Sequence[str] | None, failed: bool) -> None:
    """Write the STAC Item; after a failure, a problem with the item is logged, not raised
    (the failure is what the caller must see)."""
    try:
        write_store_item(store, plan, encoding, summary, usage, sources)
    except Exception as err:  # noqa: BLE001 - never mask the run's own failure
        if not failed:
            raise
        log.warning("could not write the STAC item of %s: %s", store, err)


def embed_to_zarr(cube: xr.DataArray | xr.Dataset | Mapping[str, xr.DataArray],
                  store: str | os.PathLike,
                  settings: EmbedSettings | None = None, *, client: Any = None,
                  overwrite: bool = False, wave_size: int | str | None = "auto",
                  on_wave: Callable[[EmbedSummary], Any] | None = None, progress: bool = True,
                  zarr_format: int = DEFAULT_ZARR_FORMAT, dtype: str = "float32",
                  verify: str = "size", sources: Sequence[str] | None = None,
                  no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S,
                  **options: Any) -> EmbedSummary:
    """Embed a cube into a Zarr store, block by block, resumably.

    Parameters
    ----------
    cube : DataArray, Dataset or mapping
        Input cube, or ``{{modality: cube}}`` of co-registered cubes embedded through the
        model's fusion (see :func:`xterrafm.embed`).
    store : str or path
        Local path or fsspec URL of the Zarr store.
    settings : EmbedSettings, optional
        All embedding settings at once; keyword arguments below override its fields.
    client : distributed.Client, optional
        Compute on this client (default: the current one, else the local dask scheduler).
    overwrite : bool
        Replace an existing store instead of resuming into it.
    wave_size : int, "auto" or None
        Blocks in flight at a time; bounds the graph and worker memory of large jobs
        (``"auto"``: :func:`default_wave_size`; None: all at once). On a distributed client
        a rolling window (a block starts as each one finishes), else consecutive waves.
    on_wave : callable, optional
        Called with the running :class:`~xterrafm.store.counts.EmbedSummary` after every
        ``wave_size`` finished blocks and after the last one.
    progress : bool
        Show a progress bar (False silences it).
    zarr_format : int
        Zarr format of a new store: 2 (default; GDAL reads it) or 3.
    dtype : {{"float32", "float16", "int8"}}
        Data type of the stored embeddings (:mod:`xterrafm.store.encoding`; int8 keeps a
        per-cell scale and is decoded by :func:`xterrafm.store.open_embeddings`). Part of the
        store's fingerprint.
    verify : {{"size", "checksum"}}
        How a resume checks the chunks of the blocks marked done: their sizes (one listing) or
        also their CRC-32 (reads the store once). Damaged blocks are written again.
    sources : sequence of str, optional
        Source items or files the cube was read from (default ``cube.attrs["source_hrefs"]``),
        recorded as ``geoemb:source_data`` and as links of the STAC Item.
    no_worker_timeout : float
        With a client: seconds the cluster may have no worker before the job fails with
        :class:`~xterrafm.errors.WorkersLostError`, which names what the workers reported (a
        killed worker's nanny restarts it within seconds).
{settings}

    Returns
    -------
    EmbedSummary
        Blocks found complete, repaired and written, cells embedded and empty.

    Raises
    ------
    StoreMismatchError
        ``store`` holds embeddings written with other settings, or something else.
    ModelOutputError
        The model returned NaN for windows whose inputs were valid (names the windows).
    """
    t0 = time.perf_counter()
    client = get_client(client)
    StoreEncoding(dtype)  # refuse a bad dtype before anything is read
    settings = EmbedSettings.from_options(settings, **options)
    if not overwrite:
        settings = adopt_store_grid(settings, str(store))
    if sources is None:
        sources = input_sources(cube)
    emb, plan = embed_and_plan(cube, settings, client=client, salt=STORE_SALT)
    summary = EmbedSummary(store=str(store), level=plan.level)
    write_plan(emb, plan, str(store), summary=summary, client=client, overwrite=overwrite,
               wave_size=wave_size, on_wave=on_wave, progress=progress, zarr_format=zarr_format,
               dtype=dtype, verify=verify, sources=sources, no_worker_timeout=no_worker_timeout)
    summary.seconds = time.perf_counter() - t0
    return summary


embed_to_zarr.__doc__ = embed_to_zarr.__doc__.format(settings=settings_docstring())
embed_to_zarr.__signature__ = inspect.signature(embed_to_zarr).replace(parameters=[
    *list(inspect.signature(embed_to_zarr).parameters.values())[:-1], *settings_parameters()])
