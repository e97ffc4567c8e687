"""The ``xterrafm embed`` batch job: inputs -> cluster -> resumable Zarr stores -> summary.

One job embeds one or more lazy cubes (one per CRS, see :mod:`xterrafm.batch.sources`) with
:func:`xterrafm.embedding.embed_to_zarr`, which writes a template and then the blocks as
regions, in *waves* of ``wave_size`` blocks: the task graph in flight never holds more than a
wave, and memory per worker is bounded by the block (chunk) size, however large the area.

Store layout (see docs/batch.md):

- one CRS: ``STORE`` is the embedding store itself (``xr.open_zarr(STORE)``);
- several CRSs: ``STORE`` is a Zarr group with one sub-group per CRS named
  :func:`~xterrafm.batch.sources.crs_group_name` (``EPSG_32632``), each an embedding store
  (``xr.open_zarr(STORE, group="EPSG_32632")``); the root attrs list them under
  ``xterrafm_crs_groups``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.batch.clusters import GatewayOptions, LocalOptions, open_cluster
from xterrafm.batch.sources import (
    SourceError,
    classify_sources,
    crs_group_name,
    group_items_by_crs,
    modality_from_collection,
)
from xterrafm.errors import EmbedJobError, StoreMismatchError

__all__ = [
    "EmbedJob",
    "EmbedJobError",
    "JobSummary",
    "StoreMismatchError",
    "StoreResult",
    "job_from_args",
    "open_job_cubes",
    "run_embed_job",
    "store_paths",
    "synthetic_scene_for",
]

log = logging.getLogger(__name__)

#: Root-group attribute listing the per-CRS groups of a multi-CRS store.
CRS_GROUPS_ATTR = "xterrafm_crs_groups"


@dataclass
class EmbedJob:
    """Everything a batch embedding job needs; built from the command line by
    :func:`job_from_args` or directly in Python.

    Attributes
    ----------
    out : Path
        Output Zarr store.
    sources : list of str
        SOURCE hrefs; empty means "generate the synthetic scene next to ``out``".
    collection, bbox, datetime : optional
        STAC selection (``bbox`` in degrees: west, south, east, north).
    modality : str, optional
        Input modality; default from the cube's attrs.
    chunk : int, optional
        Spatial read chunk in pixels (bounds memory per task).
    synthetic_size : int
        Side in pixels of the generated synthetic scene.
    embed_kwargs : dict
        Passed to :func:`xterrafm.embedding.embed` (model, weights, level, tile, stride, ...).
    overwrite : bool
        Start again instead of resuming.
    preview : bool
        Write ``<store stem>_preview.png`` (first three principal components as RGB).
    wave_size : int, optional
        Blocks per wave (default: 4 x the cluster's threads, at least 8).
    cluster : str
        ``threads``, ``local``, ``gateway`` or a scheduler address.
    local, gateway : LocalOptions, GatewayOptions
        Cluster settings.
    progress : bool
        Show progress bars.
    stop_check : callable, optional
        Called after every wave; raises to stop the job (the CLI passes
        :meth:`xterrafm.batch.interrupts.StopRequests.check`).
    """

    out: Path
    sources: list[str] = field(default_factory=list)
    collection: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    modality: str | None = None
    chunk: int | None = None
    synthetic_size: int = 448
    embed_kwargs: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    preview: bool = True
    wave_size: int | None = None
    cluster: str = "local"
    local: LocalOptions = field(default_factory=LocalOptions)
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    progress: bool = True
    stop_check: Callable[[], None] | None = None


@dataclass
class StoreResult:
    """Outcome for one store (one CRS)."""

    store: str
    group: str | None
    crs: str
    windows_total: int = 0
    embedded: int = 0
    skipped_empty: int = 0
    already_done: int = 0
    failed: int = 0
    blocks_total: int = 0
    blocks_written: int = 0
    blocks_resumed: int = 0
    waves: int = 0
    preview: str | None = None


@dataclass
class JobSummary:
    """What the job did, over all stores.

    ``embedded`` / ``skipped_empty`` count output cells (windows at the tile level, patches
    at the patch level, per date) computed by this run; ``already_done`` those found finished
    in the store (resume); ``failed`` those neither finished before nor by this run.
    """

    out: str
    level: str
    stores: list[StoreResult] = field(default_factory=list)
    wall_s: float = 0.0
    cluster: str = ""
    peak_worker_rss_mib: float | None = None

    @property
    def embedded(self) -> int:
        return sum(s.embedded for s in self.stores)

    @property
    def skipped_empty(self) -> int:
        return sum(s.skipped_empty for s in self.stores)

    @property
    def already_done(self) -> int:
        return sum(s.already_done for s in self.stores)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stores)

    @property
    def windows_per_s(self) -> float:
        done = self.embedded + self.skipped_empty
        return done / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "out": self.out,
            "level": self.level,
            "cluster": self.cluster,
            "embedded": self.embedded,
            "skipped_empty": self.skipped_empty,
            "already_done": self.already_done,
            "failed": self.failed,
            "wall_s": round(self.wall_s, 3),
            "windows_per_s": round(self.windows_per_s, 3),
            "peak_worker_rss_mib": self.peak_worker_rss_mib,
            "stores": [vars(s) for s in self.stores],
        }

    def format(self) -> str:
        """Human-readable multi-line summary."""
        unit = "windows" if self.level == "tile" else "patches"
        rows = [
            (f"{unit} embedded", f"{self.embedded}"),
            ("skipped as empty", f"{self.skipped_empty}"),
            ("already done (resumed)", f"{self.already_done}"),
            ("failed / not done", f"{self.failed}"),
            ("wall time", f"{self.wall_s:.1f} s"),
            (f"{unit}/s", f"{self.windows_per_s:.2f}"),
        ]
        if self.peak_worker_rss_mib is not None:
            rows.append(("peak worker memory", f"{self.peak_worker_rss_mib:.0f} MiB"))
        lines = [f"xterrafm embed summary ({self.out}, on {self.cluster or 'n/a'})"]
        lines += [f"  {label + ':':<24}{value}" for label, value in rows]
        for s in self.stores:
            where = s.store if s.group is None else f"{s.store} (group {s.group})"
            lines.append(
                f"  store {where}: {s.crs}, {s.windows_total} {unit}, "
                f"{s.blocks_written} blocks written, {s.blocks_resumed} resumed, {s.waves} waves"
                + (f", preview {s.preview}" if s.preview else "")
            )
        return "\n".join(lines)


# -- building the job ----------------------------------------------------------------------------
def job_from_args(args: argparse.Namespace) -> EmbedJob:
    """Build an :class:`EmbedJob` from ``xterrafm embed``'s parsed arguments.

    Raises
    ------
    SourceError
        For an unusable SOURCE (checked before any cluster starts).
    """
    if args.source:
        classify_sources(args.source)
    if args.cluster != "gateway" and any(
        getattr(args, name) is not None
        for name in ("gateway_address", "workers", "adapt", "worker_cores", "worker_memory", "gpu")
    ):
        raise SourceError("gateway options (--gateway-address, --workers, --adapt, --worker-*, "
                          "--gpu) need --cluster gateway")
    if args.stride is not None and args.stride > args.tile:
        raise SourceError(f"--stride {args.stride} is larger than --tile {args.tile}: windows "
                          "would leave gaps")
    embed_kwargs: dict[str, Any] = {
        "model": args.model,
        "weights": args.weights,
        "level": args.level,
        "tile": args.tile,
        "stride": args.stride,
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "min_valid": args.min_valid,
    }
    if args.modality is not None:
        embed_kwargs["modality"] = args.modality
    progress = not (args.no_progress or args.quiet)
    return EmbedJob(
        out=Path(args.out),
        sources=list(args.source),
        collection=args.collection,
        bbox=tuple(args.bbox) if args.bbox else None,
        datetime=args.datetime,
        modality=args.modality,
        chunk=args.chunk,
        synthetic_size=args.synthetic_size,
        embed_kwargs=embed_kwargs,
        overwrite=args.overwrite,
        preview=not args.no_preview,
        wave_size=args.wave_size,
        cluster=args.cluster,
        local=LocalOptions(
            n_workers=args.n_workers,
            threads_per_worker=args.threads_per_worker,
            memory_limit=args.memory_limit,
        ),
        gateway=GatewayOptions(
            address=args.gateway_address,
            workers=args.workers,
            adapt=tuple(args.adapt) if args.adapt else None,
            worker_cores=args.worker_cores,
            worker_memory=args.worker_memory,
            gpu=args.gpu,
        ),
        progress=progress,
        stop_check=getattr(getattr(args, "stop_requests", None), "check", None),
    )


def synthetic_scene_for(out: Path, size: int) -> Any:
    """The synthetic scene used when no SOURCE is given: generated once next to ``out``.

    The scene lives in ``<out's folder>/synthetic-scene-<size>px``; it is deterministic (seed
    0), so an existing complete one is reused. It is written to a temporary folder first and
    renamed, so an interrupted generation never leaves a half scene behind.
    """
    from xterrafm.datasets.scene import make_synthetic_scene

    folder = Path(out).absolute().parent / f"synthetic-scene-{size}px"
    marker = folder / ".complete"
    if not marker.exists():
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the synthetic scene (%d x %d px) in %s", size, size, folder)
        make_synthetic_scene(tmp, seed=0, width=size, height=size, n_dates=2,
                             modalities=("s2_l2a",))
        (tmp / ".complete").write_text("ok")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder / "stac" / "item_collections" / "s2_l2a.json"


def _read_chunks(chunk: int | None) -> dict[str, int] | None:
    return {"y": chunk, "x": chunk} if chunk else None


def _stac_items(job: EmbedJob, href: str, kind: str) -> list[Any]:
    """Items of a STAC SOURCE, filtered, with absolute asset hrefs (so groups can be re-loaded)."""
    with import_gate():
        from pystac.utils import make_absolute_href

    from xterrafm.io.stac import resolve_items

    if kind == "stac-api" and not job.collection:
        raise SourceError("a STAC API SOURCE needs --collection")
    try:
        pairs = resolve_items(href, bbox=job.bbox, datetime=job.datetime,
                              collections=job.collection)
    except ValueError as err:
        raise SourceError(str(err)) from err
    collections = sorted({str(item.collection_id) for item, _ in pairs})
    if job.collection is None and len(collections) > 1:
        raise SourceError(f"{href} holds several collections {collections}; choose one with "
                          "--collection")
    items = []
    for item, base in pairs:
        item = item.clone()
        for asset in item.assets.values():
            asset.href = make_absolute_href(asset.href, base) if base else asset.href
        items.append(item)
    return items


def open_job_cubes(job: EmbedJob) -> dict[str, Any]:
    """Open the job's inputs as lazy cubes, one per CRS.

    Returns
    -------
    dict
        ``{"EPSG:32632": DataArray, ...}``: dask-backed ``(time, band, y, x)`` cubes.

    Raises
    ------
    SourceError
        No SOURCE could be resolved (no items, unknown form).
    """
    from xterrafm import io as xio

    chunks = _read_chunks(job.chunk)
    sources = list(job.sources)
    if not sources:
        sources = [str(synthetic_scene_for(job.out, job.synthetic_size))]
        if job.modality not in (None, "s2_l2a"):
            raise SourceError("the synthetic scene is Sentinel-2 L2A; --modality must be s2_l2a")
    spec = classify_sources(sources)
    cubes: dict[str, Any] = {}
    if spec.kind in ("stac-api", "stac-static"):
        items = _stac_items(job, spec.hrefs[0], spec.kind)
        modality = job.modality or modality_from_collection(
            job.collection or items[0].collection_id)
        if modality is None:
            raise SourceError(f"cannot tell the modality of collection "
                              f"{items[0].collection_id!r}; pass --modality")
        for crs, group in group_items_by_crs(items).items():
            cube = xio.load_stac(group, modality=modality, bbox=job.bbox, crs=crs,
                                 chunks=chunks)
            cubes[_crs_key(cube) if crs is None else str(crs)] = cube
    elif spec.kind == "geotiff":
        if job.modality is None:
            raise SourceError("GeoTIFF SOURCE needs --modality (s1, s2_l1c or s2_l2a)")
        cube = xio.open_geotiff(_geotiff_paths(spec.hrefs, job.modality), job.modality,
                                chunks=chunks)
        cubes[_crs_key(cube)] = cube
    else:
        cube = xio.open_zarr_cube(spec.hrefs[0], chunks=chunks or "auto")
        if job.modality is not None:
            cube.attrs["modality"] = job.modality
        cubes[_crs_key(cube)] = cube
    return cubes


def _crs_key(cube: Any) -> str:
    """``"EPSG:<code>"`` of a cube's CRS when it has one, else its WKT."""
    crs = cube.odc.geobox.crs
    return f"EPSG:{crs.epsg}" if crs.epsg is not None else crs.to_wkt()


def _geotiff_paths(hrefs: tuple[str, ...], modality: str) -> Any:
    """One multi-band file as is; band files keyed by band name when their names say it.

    A shell glob sorts ``B8A`` after ``B12``, so files named after bands are matched by name
    rather than by order.
    """
    from xterrafm.bands import get_modality

    if len(hrefs) == 1:
        return hrefs[0]
    names = {b.upper() for b in get_modality(modality).band_names}
    stems = [Path(h.rsplit("/", 1)[-1]).stem.upper() for h in hrefs]
    if all(stem in names for stem in stems) and len(set(stems)) == len(stems):
        return dict(zip(stems, hrefs, strict=True))
    return list(hrefs)


def store_paths(out: Path, crs_keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """Where each CRS goes: ``{crs: (store path, group name or None)}``.

    One CRS: the store is ``out``. Several: ``out/<EPSG_code>`` groups inside ``out``.
    """
    if len(crs_keys) == 1:
        return {crs_keys[0]: (str(out), None)}
    return {crs: (str(Path(out) / crs_group_name(crs)), crs_group_name(crs)) for crs in crs_keys}


def _prepare_root(out: Path, groups: list[str], overwrite: bool) -> None:
    """Create the root group of a multi-CRS store (or check an existing one)."""
    with import_gate():
        import zarr

    from xterrafm.embedding.zarr_output import store_status

    if overwrite and out.exists():
        shutil.rmtree(out)
    if out.exists() and store_status(out).fingerprint is not None:
        raise StoreMismatchError(
            f"{out} holds a single-CRS embedding store, but this job spans {len(groups)} CRSs "
            f"({', '.join(groups)}); use another --out or --overwrite"
        )
    root = zarr.open_group(str(out), mode="a")
    known = list(root.attrs.get(CRS_GROUPS_ATTR, []))
    root.attrs[CRS_GROUPS_ATTR] = sorted(set(known) | set(groups))


def _consolidate_root(out: Path) -> None:
    """Consolidate the metadata of a multi-CRS store's whole hierarchy into its root, so that
    ``xr.open_zarr(STORE, group=...)`` finds it there (it looks in the root, not the group)
    instead of falling back to listing with a warning. Run after each group's template."""
    import warnings

    with import_gate():
        import zarr

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(str(out))
    except Exception as err:  # noqa: BLE001 - readers can still list the store
        log.warning("could not consolidate the metadata of %s: %s", out, err)


def _default_wave_size(client: Any) -> int:
    if client is None:
        threads = os.cpu_count() or 1
    else:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        threads = sum(w.get("nthreads", 1) for w in workers.values()) or 1
    return max(8, 4 * threads)


# -- running ----------------------------------------------------------------------------------------
def run_embed_job(job: EmbedJob) -> JobSummary:
    """Run a batch embedding job to completion (or failure) and summarise it.

    Raises
    ------
    SourceError
        Unusable inputs (before any cluster starts).
    StoreMismatchError
        The store exists with other settings.
    ClusterError
        The cluster could not be created or reached.
    EmbedJobError
        Computing or writing failed; finished blocks are kept and a rerun resumes.
    KeyboardInterrupt
        On Ctrl-C, after the cluster was shut down.
    """
    from xterrafm.embedding.zarr_output import (
        FingerprintMismatchError,
        embed_to_zarr,
        store_status,
    )

    cubes = open_job_cubes(job)
    t0 = time.perf_counter()  # wall time: cluster, embedding, writing (not scene generation)
    targets = store_paths(job.out, list(cubes))
    level = str(job.embed_kwargs.get("level", "tile"))
    summary = JobSummary(out=str(job.out), level=level)
    if len(targets) > 1:
        if "://" in str(job.out):
            raise SourceError("an area spanning several CRSs needs a local --out for now "
                              f"({len(targets)} CRSs: {', '.join(targets)})")
        log.info("the area spans %d CRSs: one group per CRS in %s", len(targets), job.out)
        _prepare_root(job.out, [g for _, g in targets.values() if g], job.overwrite)
    on_wave = None if job.stop_check is None else (lambda _done: job.stop_check())
    with open_cluster(job.cluster, local=job.local, gateway=job.gateway) as running:
        summary.cluster = running.name
        wave_size = job.wave_size or _default_wave_size(running.client)
        for crs, cube in cubes.items():
            store, group = targets[crs]
            result = StoreResult(store=str(job.out), group=group, crs=crs)
            summary.stores.append(result)
            log.info("embedding %s cube %s into %s", crs, dict(cube.sizes), store)
            try:
                done = embed_to_zarr(
                    cube, store, client=running.client,
                    overwrite=job.overwrite and group is None,
                    wave_size=wave_size, progress=job.progress, on_wave=on_wave,
                    **job.embed_kwargs,
                )
            except (FingerprintMismatchError, FileExistsError) as err:
                raise StoreMismatchError(str(err)) from err
            except (KeyboardInterrupt, SystemExit):
                _account_failure(result, store)
                raise
            except Exception as err:
                log.debug("embedding %s failed", crs, exc_info=True)
                _account_failure(result, store)
                summary.wall_s = time.perf_counter() - t0
                raise EmbedJobError(
                    f"embedding {crs} into {store} failed: {type(err).__name__}: {err} "
                    f"(finished blocks are kept; fix the cause and rerun the same command to "
                    f"resume)",
                    summary,
                ) from err
            finally:
                if group is not None:
                    _consolidate_root(job.out)
            status = store_status(store)
            result.windows_total = status.cells_total
            result.embedded = done.cells_embedded
            result.skipped_empty = done.cells_empty
            result.already_done = (status.cells_embedded + status.cells_empty
                                   - done.cells_embedded - done.cells_empty)
            result.failed = status.cells_failed
            result.blocks_total = done.blocks_total
            result.blocks_written = done.blocks_written
            result.blocks_resumed = done.blocks_skipped
            result.waves = done.waves
        summary.peak_worker_rss_mib = _peak_rss_mib(running.client)
    if job.preview and "://" not in str(job.out):
        from xterrafm.batch.preview import write_preview

        for result in summary.stores:
            store, group = targets[result.crs]
            png = _preview_path(job.out, group)
            try:
                write_preview(store, png)
                result.preview = str(png)
            except Exception as err:  # noqa: BLE001 - a preview never fails the job
                log.warning("could not write the preview %s: %s", png, err)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _max_rss_mib() -> float:
    """Peak resident memory of the calling process in MiB (Linux/macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _peak_rss_mib(client: Any) -> float | None:
    """Largest peak RSS over the cluster's worker processes (this process without a client)."""
    try:
        if client is None:
            return _max_rss_mib()
        return max(client.run(_max_rss_mib).values(), default=None)
    except Exception as err:  # noqa: BLE001 - a figure for the summary, never fatal
        log.debug("could not read worker memory: %s", err)
        return None


def _account_failure(result: StoreResult, store: str) -> None:
    """Fill ``result`` from what the store holds after a failed or interrupted run."""
    from xterrafm.embedding.zarr_output import store_status

    try:
        status = store_status(store)
    except FileNotFoundError:  # failed before the template was written
        return
    result.windows_total = status.cells_total
    result.already_done = status.cells_embedded + status.cells_empty
    result.failed = status.cells_failed
    result.blocks_written = status.blocks_done


def _preview_path(out: Path, group: str | None) -> Path:
    stem = Path(out).name
    for suffix in (".zarr",):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    name = f"{stem}_preview.png" if group is None else f"{stem}_{group}_preview.png"
    return Path(out).absolute().parent / name
