"""Resumable Zarr output of embeddings.

Layout of a store written by :func:`embed_to_zarr`:

* a Zarr group (v3 by default) holding the ``embeddings`` variable and its coordinates,
  written first as a *template* (``to_zarr(compute=False)``: metadata, coordinates, attrs,
  no embedding chunks) with Zarr chunks equal to the dask blocks, so blocks never share a
  chunk and can be written concurrently. The group attrs hold ``xterrafm_fingerprint``: the
  settings the store was written with (model, weights sha256, modality, normalisation, level,
  tile, stride, min_valid, output grid, times);
* bookkeeping under the ``embeddings`` array's prefix, ``embeddings/.xterrafm/``:
  ``template.done`` once the template is complete, and ``blocks/<i>.<j>...json``, one
  completion marker per block (block index along every dimension), written after the block's
  region is stored and holding its counts. Zarr never lists the keys under an array's prefix
  (arrays have no members), so ``xr.open_zarr`` and zarr's group traversals see a plain Zarr
  hierarchy and warn about nothing; the markers go when the array goes. Each marker is its own
  object, written whole (rename of a temporary file on local disks, one PUT on object stores),
  so concurrent writers never share one and a killed process leaves none half written.

A run that stops part way (killed, crashed, cancelled) leaves markers for the finished blocks;
calling :func:`embed_to_zarr` again with the same settings computes only the others. A store
written with other settings is refused with the differing fields named.
:func:`store_status` reports how far a store got.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from xterrafm.embedding.scheduling import get_client, keep_annotations, start_preload
from xterrafm.embedding.spec import ModelSpec

__all__ = [
    "EmbedSummary",
    "FingerprintMismatchError",
    "StoreStatus",
    "embed_to_zarr",
    "fingerprint",
    "pending_blocks",
    "prepare_store",
    "store_status",
    "write_blocks",
]

_VAR = "embeddings"
#: Bookkeeping folder, relative to the store root: under the array's prefix, where Zarr never
#: lists (a folder beside the arrays would make every listing of the group warn).
_META_DIR = f"{_VAR}/.xterrafm"
#: Where stores written before 2026-11 kept it (beside the arrays); moved on resume.
_LEGACY_META_DIR = ".xterrafm"
_FINGERPRINT_ATTR = "xterrafm_fingerprint"
FINGERPRINT_FIELDS = ("model", "weights_sha256", "modality", "normalization", "level", "tile",
                      "stride", "min_valid", "seed", "grid", "time", "embedding_dim")


class FingerprintMismatchError(ValueError):
    """The store was written with different settings than those of the current run."""


@dataclass
class EmbedSummary:
    """What a call to :func:`embed_to_zarr` / :func:`write_blocks` did.

    Attributes
    ----------
    store : str
        The store written.
    level : str
        ``"tile"`` or ``"patch"``: what an output cell is (a window or a 16 px patch).
    blocks_total : int
        Blocks of the store.
    blocks_written : int
        Blocks computed and written by this call.
    blocks_skipped : int
        Blocks already complete before this call (not recomputed).
    cells_embedded : int
        Output cells (windows at the tile level, patches at the patch level, per date) with an
        embedding, over the blocks written by this call.
    cells_empty : int
        Output cells left NaN (valid fraction below ``min_valid``) over those blocks.
    waves : int
        Number of waves submitted.
    seconds : float
        Wall time of the call.
    """

    store: str
    level: str
    blocks_total: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    cells_embedded: int = 0
    cells_empty: int = 0
    waves: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every block of the store is written."""
        return self.blocks_written + self.blocks_skipped == self.blocks_total

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return asdict(self)


# -- fingerprint --------------------------------------------------------------------------------
def fingerprint(emb: xr.DataArray) -> dict:
    """The settings that make two embedding arrays interchangeable block by block.

    Parameters
    ----------
    emb : DataArray
        Output of :func:`xterrafm.embedding.embed`.

    Returns
    -------
    dict
        JSON-serialisable: model, weights sha256, modality, normalisation, level, tile, stride,
        min_valid, seed, output grid (CRS WKT, transform, shape), times, embedding width.
    """
    a = emb.attrs
    gbox = emb.odc.geobox
    times = [str(t) for t in np.atleast_1d(emb["time"].values)] if "time" in emb.dims else []
    return {
        "model": a["model"],
        "weights_sha256": a["weights_sha256"],
        "modality": a["modality"],
        "normalization": a["normalization"],
        "level": a["level"],
        "tile": int(a["tile"]),
        "stride": int(a["stride"]),
        "min_valid": float(a["min_valid"]),
        "seed": int(a.get("seed", 0)),
        "grid": {"crs": gbox.crs.to_wkt(), "transform": list(gbox.affine)[:6],
                 "shape": list(gbox.shape)},
        "time": times,
        "embedding_dim": int(emb.sizes["embedding"]),
    }


def _diff(old: dict, new: dict) -> list[str]:
    out = [f"{k}: store has {old.get(k)!r}, this run has {new.get(k)!r}"
           for k in FINGERPRINT_FIELDS if k not in ("grid", "time") and old.get(k) != new.get(k)]
    if not out:  # same settings: say whether the scene (grid or dates) differs
        out = [f"{k} differs (another scene, subset or dates)" for k in ("grid", "time")
               if old.get(k) != new.get(k)]
    return out


# -- store helpers ------------------------------------------------------------------------------
def _fs(store: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(str(store))


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _block_name(idx: tuple[int, ...]) -> str:
    return ".".join(str(i) for i in idx)


def _read_json(fs: Any, path: str) -> dict | None:
    try:
        with fs.open(path, "rb") as fh:
            return json.loads(fh.read().decode())
    except FileNotFoundError:
        return None


def _write_json(fs: Any, path: str, obj: dict) -> None:
    from fsspec.implementations.local import LocalFileSystem

    data = json.dumps(obj, sort_keys=True).encode()
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp-{time.time_ns()}"
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)  # atomic rename on a local file system
    else:
        fs.pipe_file(path, data)


def _block_grid(emb: xr.DataArray) -> tuple[int, ...]:
    return tuple(len(c) for c in emb.data.chunks)


def _all_blocks(emb: xr.DataArray) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*_block_grid(emb))]


def _regular(emb: xr.DataArray) -> xr.DataArray:
    """Zarr needs regular chunks (the last may be shorter): rechunk where dask's are not."""
    fixes = {}
    for dim, chunks in zip(emb.dims, emb.data.chunks, strict=True):
        if len(chunks) > 1 and (len(set(chunks[:-1])) > 1 or chunks[-1] > chunks[0]):
            fixes[dim] = 1 if dim == "time" else max(chunks)
    return emb.chunk(fixes) if fixes else emb


def prepare_store(emb: xr.DataArray, store: str, *, overwrite: bool = False,
                  zarr_format: int = 3) -> str:
    """Make ``store`` ready to receive the blocks of ``emb``: new template, or resume.

    Parameters
    ----------
    emb : DataArray
        Lazy embeddings (:func:`xterrafm.embedding.embed`).
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
    FingerprintMismatchError
        The store was written with other settings (the message lists them).
    FileExistsError
        The path holds something that is not an xterrafm embedding store.
    """
    store = str(store)
    fs, root = _fs(store)
    fp = fingerprint(emb)
    meta = _join(root, _META_DIR)
    if fs.exists(root) and overwrite:
        fs.rm(root, recursive=True)
    if fs.exists(root) and fs.ls(root):
        old = _attrs_fingerprint(store)
        if old is None:
            raise FileExistsError(f"{store} exists and is not an xterrafm embedding store (no "
                                  f"{_FINGERPRINT_ATTR} in its Zarr group attrs); choose another "
                                  "path or pass overwrite=True to replace it")
        diffs = _diff(old, fp)
        if diffs:
            raise FingerprintMismatchError(
                f"refusing to resume into {store}: it was written with different settings: "
                + "; ".join(diffs) + ". Use the same settings, another store, or overwrite=True.")
        _move_legacy_bookkeeping(fs, root)
        if fs.exists(_join(meta, "template.done")):
            return "resume"
        if _marker_paths(fs, root):
            raise FileExistsError(f"{store} has written blocks but no complete template; "
                                  "pass overwrite=True to start again")
    # the template needs only shape, chunks and dtype: a placeholder of the same chunks spares
    # xarray materialising the embedding graph just to write metadata
    placeholder = da.empty(emb.shape, chunks=emb.data.chunks, dtype=emb.dtype)
    ds = emb.copy(data=placeholder).to_dataset(name=_VAR)
    ds.attrs[_FINGERPRINT_ATTR] = json.dumps(fp, sort_keys=True)
    chunks = [c[0] for c in emb.data.chunks]
    enc = {_VAR: {"chunks": chunks}}
    if "spatial_ref" in ds.coords:
        enc[_VAR]["grid_mapping"] = "spatial_ref"  # CRS survives decode_coords="all"
    with warnings.catch_warnings():
        # consolidated metadata is a zarr-python extension for v3; readers that lack it list
        # the store instead. It spares xr.open_zarr a listing.
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(store, mode="w", compute=False, zarr_format=zarr_format, consolidated=True,
                   encoding=enc)
    # after to_zarr(mode="w"), which clears the directory
    fs.makedirs(_join(meta, "blocks"), exist_ok=True)
    fs.pipe_file(_join(meta, "template.done"), b"ok")
    return "new"


def _attrs_fingerprint(store: str) -> dict | None:
    """The fingerprint kept in the group attrs (None when the path is not such a group)."""
    import zarr

    try:
        text = zarr.open_group(store, mode="r").attrs.get(_FINGERPRINT_ATTR)
    except Exception:  # noqa: BLE001 - not a Zarr group at all
        return None
    return json.loads(text) if isinstance(text, str) else None


def _move_legacy_bookkeeping(fs: Any, root: str) -> None:
    """Move the bookkeeping of a store in the earlier layout (``.xterrafm/`` beside the arrays)
    to its place under the array, file by file (a run killed part way is finished by the next),
    so that resuming keeps its finished blocks and Zarr stops warning about the folder."""
    old = _join(root, _LEGACY_META_DIR)
    if not fs.exists(old):
        return
    new = _join(root, _META_DIR)
    fs.makedirs(_join(new, "blocks"), exist_ok=True)
    old_blocks = _join(old, "blocks")
    if fs.exists(old_blocks):
        for path in fs.ls(old_blocks, detail=False):
            if path.endswith(".json"):
                fs.mv(path, _join(new, "blocks", path.rsplit("/", 1)[-1]))
    if fs.exists(_join(old, "template.done")):
        fs.mv(_join(old, "template.done"), _join(new, "template.done"))
    fs.rm(old, recursive=True)


def _marker_paths(fs: Any, root: str) -> list[str]:
    """Completion markers of a store (also those of the earlier layout, not yet moved)."""
    paths: list[str] = []
    for meta in (_META_DIR, _LEGACY_META_DIR):
        folder = _join(root, meta, "blocks")
        if fs.exists(folder):
            paths += [p for p in fs.ls(folder, detail=False) if p.endswith(".json")]
    return paths


def pending_blocks(emb: xr.DataArray, store: str) -> list[tuple[int, ...]]:
    """Block indices of ``emb`` without a completion marker in ``store``."""
    fs, root = _fs(str(store))
    done = {p.rsplit("/", 1)[-1][:-5] for p in _marker_paths(fs, root)}
    return [b for b in _all_blocks(emb) if _block_name(b) not in done]


@dataclass(frozen=True)
class StoreStatus:
    """How far an embedding store got, read from the store alone (:func:`store_status`).

    Attributes
    ----------
    store : str
        The store (path or URL).
    fingerprint : dict or None
        The settings the store was written with (see :func:`fingerprint`); None when the path
        holds no xterrafm embedding store (or not yet its template).
    template_complete : bool
        Metadata and coordinates are written; blocks can be written or resumed.
    blocks_total : int
        Blocks (Zarr chunks of ``embeddings``, one per dask block) of the store.
    blocks_done : int
        Blocks with a completion marker (stored, counted below).
    cells_total : int
        Output cells of the store: windows at the tile level, 16 px patches at the patch level,
        per date (the ``embeddings`` shape without its ``embedding`` axis).
    cells_embedded : int
        Cells with an embedding, over the finished blocks.
    cells_empty : int
        Cells left NaN (valid fraction below ``min_valid``), over the finished blocks.
    """

    store: str
    fingerprint: dict | None
    template_complete: bool
    blocks_total: int
    blocks_done: int
    cells_total: int
    cells_embedded: int
    cells_empty: int

    @property
    def blocks_failed(self) -> int:
        """Blocks not finished: never written, or their computation or write failed."""
        return self.blocks_total - self.blocks_done

    @property
    def cells_failed(self) -> int:
        """Cells of the blocks not finished."""
        return self.cells_total - self.cells_embedded - self.cells_empty

    @property
    def complete(self) -> bool:
        """Whether the template and every block are written."""
        return self.template_complete and self.blocks_done == self.blocks_total

    def to_dict(self) -> dict:
        """Plain-dict form, with the derived counts."""
        return {**asdict(self), "blocks_failed": self.blocks_failed,
                "cells_failed": self.cells_failed, "complete": self.complete}


def _array_dims(arr: Any) -> list[str] | None:
    names = getattr(arr.metadata, "dimension_names", None)  # Zarr v3
    if names is None:
        names = arr.attrs.get("_ARRAY_DIMENSIONS")  # Zarr v2, as xarray writes it
    return list(names) if names else None


def store_status(store: str | os.PathLike) -> StoreStatus:
    """Read how far the embedding store ``store`` got: blocks done, cells embedded and empty.

    Parameters
    ----------
    store : str or path
        Local path or fsspec URL of a store written by :func:`embed_to_zarr` (or the group of
        one CRS inside a multi-CRS store).

    Returns
    -------
    StoreStatus
        All counts are 0 for a store whose template is not written yet.

    Raises
    ------
    FileNotFoundError
        Nothing exists at ``store``.
    """
    import zarr

    store = str(store)
    fs, root = _fs(store)
    if not fs.exists(root):
        raise FileNotFoundError(f"no embedding store at {store}")
    fp = _attrs_fingerprint(store)
    blocks_total = cells_total = 0
    try:
        arr = zarr.open_array(store=store, path=_VAR, mode="r")
    except Exception:  # noqa: BLE001 - no template (yet), or not an embedding store
        arr = None
    if arr is not None:
        blocks_total = math.prod(-(-n // c) for n, c in zip(arr.shape, arr.chunks, strict=True))
        dims = _array_dims(arr) or []
        axis = dims.index("embedding") if "embedding" in dims else arr.ndim - 3
        cells_total = math.prod(n for i, n in enumerate(arr.shape) if i != axis)
    markers = _marker_paths(fs, root)
    embedded = empty = 0
    names = set()
    for path, data in (fs.cat(markers).items() if markers else ()):
        counts = json.loads(data)
        names.add(path.rsplit("/", 1)[-1])
        embedded += int(counts.get("cells_embedded", 0))
        empty += int(counts.get("cells_empty", 0))
    template = any(fs.exists(_join(root, meta, "template.done"))
                   for meta in (_META_DIR, _LEGACY_META_DIR))
    return StoreStatus(store=store, fingerprint=fp, template_complete=template,
                       blocks_total=blocks_total, blocks_done=len(names), cells_total=cells_total,
                       cells_embedded=embedded, cells_empty=empty)


def _write_region(block: np.ndarray, *, store: str, emb_axis: int,
                  block_info: dict | None = None) -> np.ndarray:
    """Store one block into its region, then write its completion marker.

    Returns an array with the block's dimensions, length 1 along each except ``emb_axis``
    (length 2): cells embedded and cells empty.
    """
    import zarr

    loc = block_info[0]["array-location"]
    idx = block_info[0]["chunk-location"]
    arr = zarr.open_array(store=store, path=_VAR, mode="r+")
    arr[tuple(slice(a, b) for a, b in loc)] = block
    cells = np.isfinite(block).all(axis=emb_axis)
    n_ok = int(cells.sum())
    n_empty = int(cells.size - n_ok)
    fs, root = _fs(store)
    _write_json(fs, _join(root, _META_DIR, "blocks", _block_name(idx) + ".json"),
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


def _resources(emb: xr.DataArray) -> dict | None:
    """The resource request annotated on ``emb``'s model tasks (e.g. ``{"GPU": 1}``), if any."""
    resources = None
    for layer in emb.data.dask.layers.values():
        if layer.annotations and "resources" in layer.annotations:
            resources = layer.annotations["resources"]
    return resources


def _auto_wave_size(client: Any) -> int:
    """4 blocks per dask thread (at least 4): keeps workers busy while bounding what the
    scheduler reads ahead, so memory does not grow with the scene."""
    if client is not None:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    else:
        threads = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    return max(4, 4 * threads)


def _waves(items: list, size: int | None) -> Iterable[list]:
    if not size or size >= len(items):
        if items:
            yield items
        return
    for i in range(0, len(items), size):
        yield items[i:i + size]


def write_blocks(emb: xr.DataArray, store: str, blocks: list[tuple[int, ...]] | None = None, *,
                 client: Any = None, wave_size: int | str | None = "auto",
                 on_wave: Callable[[EmbedSummary], Any] | None = None, progress: bool = True,
                 summary: EmbedSummary | None = None) -> EmbedSummary:
    """Compute the given blocks of ``emb`` and write each into its region of ``store``.

    Parameters
    ----------
    emb : DataArray
        Lazy embeddings whose template is already in ``store`` (:func:`prepare_store`).
    store : str
        Local path or fsspec URL.
    blocks : list of tuple, optional
        Block indices to write (default: :func:`pending_blocks`).
    client : distributed.Client, optional
        Compute on this client (default: the current one, else the local dask scheduler).
    wave_size : int, "auto" or None
        Submit at most this many blocks at a time, bounding graph size and memory for very
        large jobs. ``"auto"`` (default): 4 blocks per dask thread (at least 4) — submitting
        everything at once lets the scheduler read ahead, and worker memory then grows with
        the scene. None: all at once.
    on_wave : callable, optional
        Called with the running :class:`EmbedSummary` after each wave (a hook for batch jobs:
        logging, checkpoints, stopping by raising).
    progress : bool
        Show a progress bar over blocks (tqdm), updated as blocks finish.
    summary : EmbedSummary, optional
        Summary to update (default: a new one).

    Returns
    -------
    EmbedSummary
    """
    from tqdm.auto import tqdm

    store = str(store)
    blocks = pending_blocks(emb, store) if blocks is None else list(blocks)
    if summary is None:
        summary = EmbedSummary(store=store, level=str(emb.attrs.get("level")),
                               blocks_total=len(_all_blocks(emb)))
    client = get_client(client)
    if wave_size == "auto":
        wave_size = _auto_wave_size(client)
    resources = _resources(emb)
    counts = _written_counts(emb, store, resources)
    bar = tqdm(total=len(blocks), desc="embedding blocks", unit="block", disable=not progress)
    try:
        for wave in _waves(blocks, wave_size):
            parts = [counts.blocks[b] for b in wave]
            with keep_annotations():
                if client is not None:
                    from distributed import as_completed

                    # one submission per block, earlier blocks first: the scheduler then
                    # reads block by block, and the first forward passes start after one
                    # block's reads instead of after the whole wave's
                    futures = [client.compute(p, priority=len(parts) - i)
                               for i, p in enumerate(parts)]
                    results = []
                    # the loop of *this* client: as_completed otherwise looks for a default
                    # client, and a client made with set_as_default=False is not one
                    for fut in as_completed(futures, loop=client.loop):
                        results.append(fut.result())
                        bar.update(1)
                else:
                    with _TaskBar(bar, counts.name):
                        results = list(dask.compute(*parts))
            axis = emb.dims.index("embedding")
            for r in results:
                summary.cells_embedded += int(r.take(0, axis=axis).sum())
                summary.cells_empty += int(r.take(1, axis=axis).sum())
            summary.blocks_written += len(wave)
            summary.waves += 1
            if on_wave is not None:
                on_wave(summary)
    finally:
        bar.close()
    return summary


class _TaskBar(dask.callbacks.Callback):
    """Advance a tqdm bar when a write task of this store finishes (local schedulers)."""

    def __init__(self, bar: Any, prefix: str) -> None:
        super().__init__()
        self._bar, self._prefix = bar, prefix

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(self._prefix):
            self._bar.update(1)


def _model_spec(emb: xr.DataArray, embed_kwargs: dict) -> ModelSpec:
    """The model identity of ``emb``'s tasks (what :func:`runtime.get_model` caches by)."""
    from xterrafm.embedding.api import _weights_arg, weights_stamp

    a = emb.attrs
    weights = embed_kwargs.get("weights")
    return ModelSpec(model=a["model"], weights=_weights_arg(weights, a["model"]),
                     weights_sha256=a["weights_sha256"], modality=a["modality"],
                     seed=int(a["seed"]), device=a["device"], precision=a["precision"],
                     weights_stamp=weights_stamp(weights))


def embed_to_zarr(cube: xr.DataArray | xr.Dataset, store: str, *, client: Any = None,
                  overwrite: bool = False, wave_size: int | str | None = "auto",
                  on_wave: Callable[[EmbedSummary], Any] | None = None, progress: bool = True,
                  zarr_format: int = 3, **embed_kwargs: Any) -> EmbedSummary:
    """Embed a cube into a Zarr store, block by block, resumably.

    Parameters
    ----------
    cube : DataArray or Dataset
        Input cube (see :func:`xterrafm.embedding.embed`).
    store : str or path
        Local path or fsspec URL of the Zarr store.
    client : distributed.Client, optional
        Compute on this client (default: the current one, else the local dask scheduler).
    overwrite : bool
        Replace an existing store instead of resuming into it.
    wave_size : int, "auto" or None
        Blocks per submitted wave; bounds the graph and worker memory of large jobs
        (``"auto"``: 4 per dask thread, see :func:`write_blocks`; None: all at once).
    on_wave : callable, optional
        Called with the running :class:`EmbedSummary` after each wave.
    progress : bool
        Show a progress bar (False silences it).
    zarr_format : int
        Zarr format of a new store (default 3).
    **embed_kwargs
        Passed to :func:`xterrafm.embedding.embed` (model, weights, level, tile, stride, ...).

    Returns
    -------
    EmbedSummary
        Blocks written and skipped, cells embedded and empty.

    Raises
    ------
    FingerprintMismatchError
        ``store`` holds embeddings written with other settings.
    """
    from xterrafm.embedding.api import embed

    t0 = time.perf_counter()
    client = get_client(client)
    emb = _regular(embed(cube, client=client, **embed_kwargs))
    store = str(store)
    spec, resources = _model_spec(emb, embed_kwargs), _resources(emb)
    # workers start loading the model now, while the template is written and blocks are read
    preloading = start_preload(spec, client, resources) if client is not None else []
    try:
        state = prepare_store(emb, store, overwrite=overwrite, zarr_format=zarr_format)
        todo = pending_blocks(emb, store)
        if not todo and client is not None:
            client.cancel(preloading)
        elif todo and client is None:  # local schedulers: a thread here, only if needed
            preloading = start_preload(spec, None, resources)
        summary = EmbedSummary(store=store, level=str(emb.attrs["level"]),
                               blocks_total=len(_all_blocks(emb)))
        summary.blocks_skipped = summary.blocks_total - len(todo)
        summary.extra["state"] = state
        write_blocks(emb, store, todo, client=client, wave_size=wave_size, on_wave=on_wave,
                     progress=progress, summary=summary)
    finally:
        # a preload thread of this process must not outlive the job: a thread still inside
        # torch when the interpreter exits aborts the process; futures are held until here,
        # since releasing one may cancel its task
        for handle in preloading:
            if isinstance(handle, threading.Thread):
                handle.join()
        del preloading
    summary.seconds = time.perf_counter() - t0
    return summary
