"""The embed plan: everything about an embedding job that is decided before the graph exists.

:func:`make_plan` turns :class:`~xterrafm.embedding.settings.EmbedSettings` and the geometry
of an input cube (its grid, chunks and dates) into one frozen :class:`EmbedPlan`: the model
spec the workers rebuild the encoder from, the window layouts along both axes, the output
cells per dask block, the resource request of the model tasks, the output grid and the
store fingerprint. :func:`xterrafm.embedding.graph.embed_dask` builds the graph from it,
:func:`xterrafm.embed` wraps the graph in xarray, and :func:`xterrafm.embed_to_zarr` writes it
— all from the same plan, which is made once per call and passed on.

Nothing here imports xarray: the geometry is passed in explicitly.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm._version import __version__
from xterrafm.bands import get_modality
from xterrafm.embedding.runtime import precision_report
from xterrafm.embedding.scheduling import gpu_resources, start_reader_warmup
from xterrafm.embedding.settings import EmbedSettings
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import AxisWindows, output_geobox
from xterrafm.errors import (
    RandomWeightsWarning,
    UsageError,
    WeightsNotFoundError,
    XterrafmWarning,
)
from xterrafm.hub import describe_source, is_hub_request, resolve_weights_for_cluster
from xterrafm.models.config import get_config
from xterrafm.models.precision import canonical_precision

with import_gate():
    from odc.geo.geobox import GeoBox

__all__ = ["FILL_NOTE", "RANDOM_WEIGHTS_NOTE", "EmbedPlan", "check_weights_path", "describe_model",
           "make_plan", "resolve_job_precision", "weights_stamp", "worker_precision_reports"]

#: How inputs are filled and masked, recorded with every output.
FILL_NOTE = ("invalid pixels (NaN in any band after normalisation, or outside the scene) are "
             "filled with 0, the normalised mean, before the model; windows/patches whose "
             "valid fraction is below min_valid are NaN")

#: What users are told when no weights are given.
RANDOM_WEIGHTS_NOTE = (
    "no weights given: embedding with randomly initialised TerraFM weights (seeded, the same in "
    "every process), which are meaningless except for tests. For real embeddings pass "
    "weights='hf' (--weights hf: the published TerraFM-B checkpoint from the Hugging Face hub) "
    "or a local TerraFM-B.pth / .safetensors file; see docs/weights.md")

_RANDOM_WEIGHTS_SAID: list[bool] = []
_DESCRIBE_LOCK = threading.Lock()
_DESCRIBED: dict[tuple, tuple[str, str, int]] = {}


def check_weights_path(weights: str | None) -> str | None:
    """The absolute path of a weights file (``"hf"`` and None pass through).

    Raises
    ------
    WeightsNotFoundError
        No file at that path (checked here, before any data is read).
    """
    if weights is None or is_hub_request(weights):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"no weights file at {str(weights)!r} (resolved to {path.resolve()}); pass a "
            "'.safetensors' or '.pth' file, 'hf' for the published checkpoint, or nothing for "
            "random weights")
    return resolve_weights_for_cluster(str(path))


def weights_stamp(path: str | None) -> tuple[int, int] | None:
    """``(size in bytes, mtime in ns)`` of a weights file; None for random init and ``"hf"``."""
    if path in (None, "hf"):
        return None
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _check_device(device: str, client: Any) -> None:
    """Refuse a CUDA device that no process of the job has (before anything runs)."""
    if not device.startswith("cuda"):
        return
    from xterrafm.embedding.runtime import cuda_available

    if client is None:
        found = cuda_available()
    else:
        found = any(client.run(cuda_available).values())
    if not found:
        where = "this machine" if client is None else "any worker of the cluster"
        raise UsageError(f"device={device!r}: torch sees no CUDA device on {where}; use "
                         "device='auto' or 'cpu'")


def _model_workers(client: Any, resources: Mapping | None) -> list[str]:
    """Addresses of the workers that can run model tasks (those with ``resources``)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return [addr for addr, info in workers.items()
            if not resources or all((info.get("resources") or {}).get(k, 0) >= v
                                    for k, v in resources.items())]


def worker_precision_reports(device: str, client: Any,
                             resources: Mapping | None = None) -> dict[str, dict] | None:
    """Each model worker's :func:`~xterrafm.embedding.runtime.precision_report`.

    Parameters
    ----------
    device : str
        The device setting.
    client : distributed.Client
    resources : mapping, optional
        Resource request of the model tasks: only workers that have it are asked.

    Returns
    -------
    dict or None
        ``{worker address: report}``; None when no worker can run model tasks (yet).
    """
    addrs = _model_workers(client, resources)
    if not addrs:
        return None
    return client.run(precision_report, device, workers=addrs)


def _prepare_workers(client: Any, device: str, resources: Mapping | None,
                     ask_precision: bool) -> dict[str, dict] | None:
    """Register :class:`~xterrafm.embedding.workers.WorkerSetup` on ``client`` (the workers
    import the job's modules), start loading the read kernels on them
    (:func:`~xterrafm.embedding.scheduling.start_reader_warmup`), then, when
    ``ask_precision``, return the model workers' precision reports
    (:func:`worker_precision_reports`; None otherwise)."""
    from xterrafm.embedding.workers import install_worker_setup  # with a client: distributed

    install_worker_setup(client)
    start_reader_warmup(client)
    return worker_precision_reports(device, client, resources) if ask_precision else None


def resolve_job_precision(precision: str, device: str, client: Any = None,
                          resources: Mapping | None = None, *,
                          reports: Mapping[str, dict] | None = None) -> tuple[str, str]:
    """The one precision every model task of a job runs at, and why.

    Parameters
    ----------
    precision : str
        The setting (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``).
    device : str
        The device setting.
    client : distributed.Client, optional
        ``"auto"`` is resolved on the workers that can run model tasks
        (:func:`xterrafm.embedding.runtime.precision_report`); without a client, in this
        process (where local schedulers run the tasks).
    resources : mapping, optional
        Resource request of the model tasks.
    reports : mapping, optional
        The workers' reports, already asked for (:func:`worker_precision_reports`, which
        :func:`make_plan` runs while it hashes the weights); by default they are asked here.

    Returns
    -------
    precision : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    reason : str
        How it was chosen (recorded in the output's attrs).

    Notes
    -----
    A store holds one precision, so a job never mixes them. When the workers disagree (some
    CPUs with native bf16, some without; GPUs beside CPUs) every worker runs fp32, the
    reference precision, which is never the slow choice anywhere, and an
    :class:`~xterrafm.errors.XterrafmWarning` names the workers; ``precision="bf16"`` forces
    bf16. With no worker to ask (a cluster still scaling up) ``"auto"`` is fp32.
    """
    precision = canonical_precision(precision)
    if precision != "auto":
        return precision, "requested"
    if client is None:
        rep = precision_report(device)
        return rep["precision"], f"auto in this process: {rep['reason']}"
    if reports is None:
        reports = worker_precision_reports(device, client, resources)
    if not reports:
        return "fp32", "auto with no worker to ask: fp32"
    chosen = sorted({r["precision"] for r in reports.values()})
    if len(chosen) == 1:
        reasons = "; ".join(sorted({r["reason"] for r in reports.values()}))
        return chosen[0], f"auto on {len(reports)} worker(s): {reasons}"
    listing = ", ".join(f"{addr}: {r['precision']} ({r['reason']})"
                        for addr, r in sorted(reports.items()))
    warnings.warn(f"precision='auto': the workers would resolve it differently ({listing}); "
                  "every worker runs fp32 so that the output has one precision. Pass "
                  "precision='bf16' or 'fp32' to choose.", XterrafmWarning, stacklevel=4)
    return "fp32", f"auto on a mixed cluster ({', '.join(chosen)}): fp32"


def describe_model(model: str, weights: str | None, seed: int,
                   stamp: tuple[int, int] | None = None) -> tuple[str, str, int]:
    """Weights hash, source description and embedding width, without a graph.

    Parameters
    ----------
    model : str
        Variant name.
    weights : str or None
        Absolute path of a weights file (a Hugging Face cache file for ``"hf"``), or None
        (seeded random initialisation).
    seed : int
        Seed of the random initialisation.
    stamp : (int, int), optional
        Size and mtime of the file: a changed file is hashed again.

    Returns
    -------
    sha256 : str
        The value ``load_model(model, weights, seed=seed).weights_sha256`` has.
    source : str
        ``"random-init(seed=0)"``, ``hf://owner/name@commit/file`` for a Hugging Face cache
        file, or the file path.
    embed_dim : int
    """
    cfg = get_config(model)
    key = (cfg.name, weights, int(seed), stamp)
    with _DESCRIBE_LOCK:
        if key not in _DESCRIBED:
            if weights is None:
                from xterrafm.weights import load_model

                m = load_model(cfg.name, weights, seed=seed)
                _DESCRIBED[key] = (m.weights_sha256, str(m.weights_source), int(m.embed_dim))
            else:
                from xterrafm.weights import read_weights, state_dict_sha256

                _DESCRIBED[key] = (state_dict_sha256(read_weights(weights)),
                                   describe_source(weights), cfg.embed_dim)
        return _DESCRIBED[key]


@dataclass(frozen=True)
class EmbedPlan:
    """One embedding job, decided: what runs where and what comes out.

    Attributes
    ----------
    settings : EmbedSettings
        The settings the plan was made from.
    spec : ModelSpec
        What every model task carries to rebuild the encoder (model, weights and their hash,
        modality, normalisation, device, precision, batch size, threads).
    y, x : AxisWindows
        Window layouts along rows and columns.
    cells : (int, int)
        Output cells per dask block along (y, x).
    embed_dim : int
        Width of the embeddings.
    resources : dict or None
        Resource request of the model tasks (``{"GPU": 1}``).
    geobox : GeoBox
        Grid of the input pixels.
    out_geobox : GeoBox
        Grid of the output cells.
    times : tuple of str
        Dates of the input (ISO strings), one output slice each.
    weights_source : str
        Where the weights come from (file path, ``"hf"``, ``"random-init(seed=0)"``).
    precision_reason : str
        How ``spec.precision`` (always resolved: ``"fp32"``, ``"bf16"`` or ``"fp16"``) was
        chosen (:func:`resolve_job_precision`).
    calibration : str
        How the input became physical units and how that was checked
        (:func:`xterrafm.embedding.calibration.calibrate_input`).
    """

    settings: EmbedSettings
    spec: ModelSpec
    y: AxisWindows
    x: AxisWindows
    cells: tuple[int, int]
    embed_dim: int
    resources: dict | None
    geobox: GeoBox
    out_geobox: GeoBox
    times: tuple[str, ...] = field(default=())
    weights_source: str = ""
    precision_reason: str = ""
    calibration: str = ""

    @property
    def modality(self) -> str:
        """Canonical input modality."""
        return self.spec.modality

    @property
    def level(self) -> str:
        """``"tile"`` or ``"patch"``."""
        return self.y.level

    @property
    def fingerprint(self) -> dict:
        """The settings that make two stores interchangeable block by block (JSON-ready):
        model, weights sha256, modality, normalisation, level, tile, stride, min_valid, seed,
        resolved precision, output grid (CRS WKT, transform, shape), dates, embedding width."""
        s = self.settings
        gbox = self.out_geobox
        return {
            "model": self.spec.model,
            "weights_sha256": self.spec.weights_sha256,
            "modality": self.modality,
            "normalization": s.normalize if s.normalize is not None else "none",
            "level": s.level,
            "tile": s.tile,
            "stride": s.step,
            "min_valid": s.min_valid,
            "seed": s.seed,
            "precision": self.spec.precision,
            "grid": {"crs": gbox.crs.to_wkt(), "transform": list(gbox.affine)[:6],
                     "shape": list(gbox.shape)},
            "time": list(self.times),
            "embedding_dim": self.embed_dim,
        }

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance attributes of the output (JSON-friendly, so they survive Zarr)."""
        s = self.settings
        return {
            "model": self.spec.model,
            "weights": self.weights_source,
            "weights_sha256": self.spec.weights_sha256,
            "seed": s.seed,
            "modality": self.modality,
            "bands": list(get_modality(self.modality).band_names),
            "normalization": s.normalize if s.normalize is not None else "none",
            "level": s.level,
            "tile": s.tile,
            "stride": s.step,
            "patch_size": self.y.patch,
            "min_valid": s.min_valid,
            "fill": FILL_NOTE,
            "calibration": self.calibration or "not recorded",
            "device": s.device,
            "precision": self.spec.precision,
            "precision_requested": s.precision,
            "precision_choice": self.precision_reason,
            "xterrafm_version": str(__version__),
        }


def _default_cells(chunks: Sequence[int], axis: AxisWindows) -> int:
    """Output cells per block: about one input chunk's worth of pixels (at least a window)."""
    pixels = max(int(chunks[0]), axis.tile)
    return max(1, int(round(pixels / axis.cell_pixels)))


def make_plan(settings: EmbedSettings, *, modality: str, geobox: GeoBox,
              chunks: tuple[Sequence[int], Sequence[int]], times: Sequence[str] = (),
              client: Any = None, calibration: str = "") -> EmbedPlan:
    """Decide an embedding job.

    Parameters
    ----------
    settings : EmbedSettings
    modality : str
        Canonical modality of the input (the cube's, or ``settings.modality``).
    geobox : GeoBox
        Grid of the input pixels (with a CRS).
    chunks : (sequence of int, sequence of int)
        Dask chunks of the input along y and x (they set the default block size).
    times : sequence of str
        Dates of the input.
    client : distributed.Client, optional
        Client whose workers decide ``resources="auto"``.
    calibration : str
        What was applied to the input (recorded in the output's attrs).

    Returns
    -------
    EmbedPlan

    Raises
    ------
    UsageError
        Settings that cannot work on this input, or a CUDA device no worker has.
    WeightsNotFoundError
        No weights file at the given path.
    """
    weights = check_weights_path(settings.weights)
    if weights is None and not _RANDOM_WEIGHTS_SAID:
        _RANDOM_WEIGHTS_SAID.append(True)  # once per process, however many plans
        warnings.warn(RANDOM_WEIGHTS_NOTE, RandomWeightsWarning, stacklevel=4)
    hub = is_hub_request(weights)
    if hub:  # the client fetches and checks the file once; tasks carry its local path
        weights = resolve_weights_for_cluster(weights, settings.model)
    _check_device(settings.device, client)
    stamp = None if hub else weights_stamp(weights)  # workers hash a hub file themselves
    ny, nx = geobox.shape
    try:
        patch = get_config(settings.model).patch_size
        y_ax = AxisWindows(int(ny), settings.tile, settings.step, settings.level, patch)
        x_ax = AxisWindows(int(nx), settings.tile, settings.step, settings.level, patch)
    except ValueError as err:
        raise UsageError(str(err)) from None
    resources = gpu_resources(settings.resources, client)
    model_resources = resources if isinstance(resources, Mapping) else None
    reports = None
    if client is not None:
        # the workers import the job's modules and answer for their precision (on a fresh
        # cluster: after importing torch, about a second) while this process hashes the weights
        ask = canonical_precision(settings.precision) == "auto"
        with ThreadPoolExecutor(1, thread_name_prefix="xterrafm-workers") as pool:
            asked = pool.submit(_prepare_workers, client, settings.device, model_resources,
                                ask)
            sha, source, dim = describe_model(settings.model, weights, settings.seed, stamp)
            reports = asked.result()
    else:
        sha, source, dim = describe_model(settings.model, weights, settings.seed, stamp)
    precision, precision_reason = resolve_job_precision(
        settings.precision, settings.device, client, model_resources, reports=reports)
    spec = ModelSpec(model=settings.model, weights=weights, weights_sha256=sha,
                     modality=modality, normalize=settings.normalize, seed=settings.seed,
                     device=settings.device, precision=precision,
                     batch_size=settings.batch_size, torch_threads=settings.torch_threads,
                     weights_stamp=stamp)
    if settings.block_cells is None:
        cells = (_default_cells(chunks[0], y_ax), _default_cells(chunks[1], x_ax))
    else:
        cells = tuple(settings.block_cells)
    return EmbedPlan(settings=settings, spec=spec, y=y_ax, x=x_ax, cells=cells, embed_dim=dim,
                     resources=dict(resources) if isinstance(resources, Mapping) else None,
                     geobox=geobox, out_geobox=output_geobox(geobox, y_ax, x_ax),
                     times=tuple(str(t) for t in times), weights_source=source,
                     precision_reason=precision_reason,
                     calibration=calibration)
