"""The ``xterrafm embed`` batch job: inputs -> cluster -> resumable Zarr stores -> summary.

One job embeds one or more lazy cubes (one per CRS, see :mod:`xterrafm.batch.sources`) with
the store writer of :mod:`xterrafm.store.write`, which writes a template and then the blocks
as regions, in *waves*: the task graph in flight never holds more than a wave, and memory per
worker is bounded by the block (chunk) size, however large the area.

Store layout (see docs/batch.md):

- one CRS: ``STORE`` is the embedding store itself (``xr.open_zarr(STORE)``);
- several CRSs: ``STORE`` is a Zarr group with one sub-group per CRS named
  :func:`~xterrafm.batch.sources.crs_group_name` (``EPSG_32632``), each an embedding store
  (``xr.open_zarr(STORE, group="EPSG_32632")``); the root attrs list them under
  ``xterrafm_crs_groups``.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.batch.clusters import GatewayOptions, LocalOptions, open_cluster
from xterrafm.batch.sources import SourceSelection, crs_group_name, open_cubes
from xterrafm.batch.summary import JobSummary
from xterrafm.embedding.settings import EmbedSettings
from xterrafm.errors import (
    EmbedJobError,
    SourceError,
    StoreError,
    StoreMismatchError,
    UsageError,
    WeightsError,
)

__all__ = ["CRS_GROUPS_ATTR", "EmbedJob", "run_embed_job", "store_paths"]

log = logging.getLogger(__name__)

#: Root-group attribute listing the per-CRS groups of a multi-CRS store.
CRS_GROUPS_ATTR = "xterrafm_crs_groups"


@dataclass
class EmbedJob:
    """Everything a batch embedding job needs (the command line builds one in
    :mod:`xterrafm.cli`; Python code can build one directly).

    Attributes
    ----------
    out : Path
        Output Zarr store.
    inputs : SourceSelection
        What to read (no SOURCE: the synthetic scene).
    settings : EmbedSettings
        How to embed.
    overwrite : bool
        Start again instead of resuming.
    preview : bool
        Write ``<store stem>_preview.png`` (first three principal components as RGB).
    wave_size : int, optional
        Blocks per wave (default: :func:`xterrafm.store.write.default_wave_size`).
    cluster : str
        ``threads``, ``local``, ``gateway`` or a scheduler address.
    local, gateway : LocalOptions, GatewayOptions
        Cluster settings.
    progress : bool
        Show progress bars.
    stop_check : callable, optional
        Called after every wave; raises to stop the job (the CLI passes
        :meth:`xterrafm.batch.interrupts.StopRequests.check`).
    dtype : {"float32", "float16", "int8"}
        Data type of the stored embeddings (:mod:`xterrafm.store.encoding`).
    verify : {"size", "checksum"}
        How a resume checks the chunks of blocks marked done (:mod:`xterrafm.store.markers`).
    zarr_format : int
        Zarr format of new stores (2: readable by GDAL; or 3).
    fuse : FuseSelection, optional
        A second modality fused with the first
        (:mod:`xterrafm.batch.fused_sources`, ``--fuse-with``).
    """

    out: Path
    inputs: SourceSelection = field(default_factory=SourceSelection)
    settings: EmbedSettings = field(default_factory=EmbedSettings)
    overwrite: bool = False
    preview: bool = True
    wave_size: int | None = None
    cluster: str = "local"
    local: LocalOptions = field(default_factory=LocalOptions)
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    progress: bool = True
    stop_check: Callable[[], None] | None = None
    dtype: str = "float32"
    verify: str = "size"
    zarr_format: int = 2
    fuse: Any = None


def store_paths(out: Path, crs_keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """Where each CRS goes: ``{crs: (store path, group name or None)}``.

    One CRS: the store is ``out``. Several: ``out/<EPSG_code>`` groups inside ``out``.
    """
    if len(crs_keys) == 1:
        return {crs_keys[0]: (str(out), None)}
    return {crs: (str(Path(out) / crs_group_name(crs)), crs_group_name(crs)) for crs in crs_keys}


def _prepare_root(out: Path, groups: list[str], overwrite: bool, zarr_format: int) -> None:
    """Create the root group of a multi-CRS store (or check an existing one)."""
    with import_gate():
        import zarr

    from xterrafm.store.layout import read_fingerprint

    if overwrite and out.exists():
        shutil.rmtree(out)
    if out.exists() and read_fingerprint(str(out)) is not None:
        raise StoreMismatchError(
            f"{out} holds a single-CRS embedding store, but this job spans {len(groups)} CRSs "
            f"({', '.join(groups)}); use another --out or --overwrite")
    if out.exists() and any(out.iterdir()):
        root = zarr.open_group(str(out), mode="a")
    else:
        root = zarr.open_group(str(out), mode="a", zarr_format=zarr_format)
    known = list(root.attrs.get(CRS_GROUPS_ATTR, []))
    root.attrs[CRS_GROUPS_ATTR] = sorted(set(known) | set(groups))


def _consolidate_root(out: Path, group: str) -> None:
    """Give a multi-CRS store's root the geo-embeddings attrs of its groups (with
    ``geoemb:spatial_layout``), then consolidate the metadata of its whole hierarchy into the
    root, so that ``xr.open_zarr(STORE, group=...)`` finds it there (it looks in the root, not
    the group) instead of falling back to listing with a warning. Run after each group."""
    with import_gate():
        import zarr

    from xterrafm.store.conventions import GEOEMB_CONVENTION, MULTI_CRS_LAYOUT

    try:
        sub = dict(zarr.open_group(str(out / group), mode="r").attrs)
        shared = {k: v for k, v in sub.items() if k.startswith("geoemb:")}
        if shared:
            root = zarr.open_group(str(out), mode="r+")
            root.attrs.update({"zarr_conventions": [GEOEMB_CONVENTION], **shared,
                               "geoemb:spatial_layout": MULTI_CRS_LAYOUT})
    except Exception as err:  # noqa: BLE001 - the groups keep their own attrs
        log.warning("could not describe the groups of %s at its root: %s", out, err)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(str(out))
    except Exception as err:  # noqa: BLE001 - readers can still list the store
        log.warning("could not consolidate the metadata of %s: %s", out, err)


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
        Computing or writing failed; finished blocks are kept and a rerun resumes. Its
        ``summary`` counts what this run found, wrote and left undone.
    KeyboardInterrupt
        On Ctrl-C, after the cluster was shut down.
    """
    from xterrafm.embedding.api import embed_and_plan
    from xterrafm.store.conventions import input_sources
    from xterrafm.store.counts import EmbedSummary
    from xterrafm.store.encoding import StoreEncoding
    from xterrafm.store.write import STORE_SALT, adopt_store_grid, default_wave_size, write_plan

    StoreEncoding(job.dtype)  # a bad dtype is refused before anything is read

    cubes = open_cubes(job.inputs, job.out)
    if job.fuse is not None:  # {crs: {modality: cube, ...}}: fused embeddings
        from xterrafm.batch.fused_sources import attach_fused

        cubes = attach_fused(cubes, job.inputs, job.fuse, job.out)
    t0 = time.perf_counter()  # wall time: cluster, embedding, writing (not scene generation)
    targets = store_paths(job.out, list(cubes))
    summary = JobSummary(out=str(job.out), level=job.settings.level)
    if len(targets) > 1:
        if "://" in str(job.out):
            raise SourceError("an area spanning several CRSs needs a local --out for now "
                              f"({len(targets)} CRSs: {', '.join(targets)})")
        log.info("the area spans %d CRSs: one group per CRS in %s", len(targets), job.out)
        _prepare_root(job.out, [g for _, g in targets.values() if g], job.overwrite,
                      job.zarr_format)
    on_wave = None if job.stop_check is None else (lambda _done: job.stop_check())
    with open_cluster(job.cluster, local=job.local, gateway=job.gateway) as running:
        summary.cluster = running.name
        wave_size = job.wave_size or default_wave_size(running.client)
        for crs, cube in cubes.items():
            store, group = targets[crs]
            sizes = dict(cube.sizes) if hasattr(cube, "sizes") else \
                {m: dict(c.sizes) for m, c in cube.items()}  # fused: {modality: cube}
            log.info("embedding %s cube %s into %s", crs, sizes, store)
            result = EmbedSummary(store=str(job.out), level=job.settings.level, crs=crs,
                                  group=group)
            summary.stores.append(result)
            t_store = time.perf_counter()
            try:
                overwrite = job.overwrite and group is None
                # a resume writes the store's own chunks, whatever --chunk says
                settings = job.settings if overwrite else adopt_store_grid(job.settings, store)
                emb, plan = embed_and_plan(cube, settings, client=running.client,
                                           salt=STORE_SALT)
                write_plan(emb, plan, store, summary=result, client=running.client,
                           overwrite=overwrite, wave_size=wave_size, on_wave=on_wave,
                           stop_check=job.stop_check,
                           progress=job.progress, zarr_format=job.zarr_format,
                           dtype=job.dtype, verify=job.verify,
                           sources=input_sources(cube))
            except (KeyboardInterrupt, SystemExit, UsageError, StoreError, WeightsError):
                raise  # refused before any block ran: the caller reports it as it is
            except Exception as err:
                log.debug("embedding %s failed", crs, exc_info=True)
                summary.wall_s = time.perf_counter() - t0
                raise EmbedJobError(
                    f"embedding {crs} into {store} failed: {type(err).__name__}: {err} "
                    f"(finished blocks are kept; fix the cause and rerun the same command to "
                    f"resume)", summary) from err
            finally:
                result.seconds = time.perf_counter() - t_store
                if group is not None:
                    _consolidate_root(job.out, group)
        summary.peak_worker_rss_mib = _peak_rss_mib(running.client)
    if job.preview and "://" not in str(job.out):
        _write_previews(job.out, summary, targets)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _write_previews(out: Path, summary: JobSummary, targets: dict) -> None:
    from xterrafm.batch.preview import write_preview

    for result in summary.stores:
        store, group = targets[result.crs]
        png = _preview_path(out, group)
        try:
            write_preview(store, png)
            result.preview = str(png)
        except Exception as err:  # noqa: BLE001 - a preview never fails the job
            log.warning("could not write the preview %s: %s", png, err)


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


def _preview_path(out: Path, group: str | None) -> Path:
    stem = Path(out).name
    if stem.endswith(".zarr"):
        stem = stem[: -len(".zarr")]
    name = f"{stem}_preview.png" if group is None else f"{stem}_{group}_preview.png"
    return Path(out).absolute().parent / name
