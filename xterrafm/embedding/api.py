"""``embed(cube, ...)``: the encoder chunk-mapped over a lazy cube, geo-referenced.

The function checks the cube, describes the model (name, weights hash) without putting it in
the graph, re-blocks the pixels so that each dask block holds exactly the windows of one
output block (a halo of ``tile - stride`` pixels when windows overlap), maps
:func:`xterrafm.embedding.blocks.embed_block` over the blocks and wraps the result in an
``xr.DataArray`` on the output grid (:mod:`xterrafm.embedding.windows`). Nothing is computed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Hashable, Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers .rio: emb.rio.crs works on outputs)
import xarray as xr

from xterrafm.bands import check_modality, get_modality
from xterrafm.embedding.blocks import embed_block
from xterrafm.embedding.scheduling import gpu_resources, optimize_keeping_annotations
from xterrafm.embedding.spec import ModelSpec
from xterrafm.embedding.windows import LEVELS, AxisWindows, output_geobox

__all__ = ["EMBED_DIM", "as_band_cube", "describe_model", "embed"]

#: Name of the embedding dimension of outputs.
EMBED_DIM = "embedding"
_FILL_NOTE = ("invalid pixels (NaN in any band after normalisation, or outside the scene) are "
              "filled with 0, the normalised mean, before the model; windows/patches whose "
              "valid fraction is below min_valid are NaN")
_DESCRIBE_LOCK = threading.Lock()
_DESCRIBED: dict[tuple, tuple[str, str, int]] = {}


# -- inputs ------------------------------------------------------------------------------------
def as_band_cube(obj: xr.DataArray | xr.Dataset, modality: str | None = None
                 ) -> tuple[xr.DataArray, str]:
    """Bring a cube to ``(time, band, y, x)`` in the modality's band order.

    Parameters
    ----------
    obj : DataArray or Dataset
        A DataArray with a ``band`` dimension (``(time, band, y, x)`` or ``(band, y, x)``), or
        a Dataset with one variable per band (odc-stac style; names matched through the
        band aliases of :mod:`xterrafm.bands`).
    modality : str, optional
        Defaults to ``obj.attrs["modality"]``.

    Returns
    -------
    cube : DataArray
        ``(time, band, y, x)`` with a length-1 ``time`` added when the input had none.
    modality : str
        Canonical modality name.
    """
    modality = modality if modality is not None else obj.attrs.get("modality")
    if modality is None:
        raise ValueError("the cube's attrs record no 'modality'; pass modality= "
                         "('s1', 's2_l1c' or 's2_l2a')")
    modality = check_modality(modality)
    spec = get_modality(modality)
    if isinstance(obj, xr.Dataset):
        from xterrafm.bands import resolve_band

        mapping = resolve_band(modality, [str(v) for v in obj.data_vars])
        cube = xr.concat([obj[mapping[b]] for b in spec.band_names], dim="band",
                         coords="minimal", compat="override")
        cube = cube.assign_coords(band=spec.band_names)
        cube.attrs = dict(obj.attrs)
    elif isinstance(obj, xr.DataArray):
        if "band" not in obj.dims:
            raise ValueError(f"expected a DataArray with a 'band' dimension; got dims {obj.dims}")
        cube = obj
        if "band" in cube.coords:
            names = [str(b) for b in cube["band"].values]
            order = []
            for b in spec.bands:
                hits = [i for i, n in enumerate(names) if b.matches(n)]
                if not hits:
                    raise ValueError(f"band {b.name} of modality {modality!r} is missing from the "
                                     f"cube; its bands are {names}")
                order.append(hits[0])
            if order != list(range(len(names))):
                cube = cube.isel(band=order)
            cube = cube.assign_coords(band=spec.band_names)
        elif cube.sizes["band"] != spec.n_bands:
            raise ValueError(f"modality {modality!r} has {spec.n_bands} bands; the cube has "
                             f"{cube.sizes['band']}")
        else:
            cube = cube.assign_coords(band=spec.band_names)
    else:
        raise TypeError(f"expected an xarray DataArray or Dataset; got {type(obj).__name__}")
    if "time" not in cube.dims:
        cube = cube.expand_dims("time")
    extra = set(cube.dims) - {"time", "band", "y", "x"}
    if extra or not {"y", "x"} <= set(cube.dims):
        raise ValueError(f"expected dims (time, band, y, x); got {cube.dims}")
    return cube.transpose("time", "band", "y", "x"), modality


def _weights_arg(weights: Any, model: str | None = None) -> str | None:
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        raise TypeError("embed() needs weights every worker can load: a file path (or 'hf'), "
                        "not an in-memory state_dict; write it with xterrafm.convert_weights")
    from xterrafm.hub import resolve_weights_for_cluster  # "hf" -> checked local file, once

    return resolve_weights_for_cluster(weights, model)


def weights_stamp(weights: Any) -> tuple[int, int] | None:
    """``(size in bytes, mtime in ns)`` of a weights file; None for random init and ``"hf"``."""
    from xterrafm.hub import is_hub_request

    if is_hub_request(weights):  # each worker hashes the hub's file (xterrafm.hub)
        return None
    wpath = _weights_arg(weights)
    if wpath in (None, "hf"):
        return None
    st = os.stat(wpath)
    return (int(st.st_size), int(st.st_mtime_ns))


def describe_model(model: str = "terrafm-b", weights: Any = None, seed: int = 0
                   ) -> tuple[str, str, int]:
    """Weights hash, source description and embedding width, without a graph.

    Parameters
    ----------
    model : str
        Variant name.
    weights : path, "hf" or None
        As for :func:`xterrafm.load_model`; None is the seeded random initialisation.
    seed : int
        Seed of the random initialisation.

    Returns
    -------
    sha256 : str
        Same value as ``load_model(model, weights, seed=seed).weights_sha256``.
    source : str
        ``"random-init(seed=0)"``, ``hf://owner/name@commit/file`` for a Hugging Face cache
        file (``"hf"`` resolves to one), or the resolved file path.
    embed_dim : int
    """
    from xterrafm.models import get_config

    cfg = get_config(model)
    wpath = _weights_arg(weights, cfg.name)
    key = (cfg.name, wpath, seed, weights_stamp(weights))
    with _DESCRIBE_LOCK:
        if key not in _DESCRIBED:
            if wpath is None or wpath == "hf":
                from xterrafm.weights import load_model

                m = load_model(cfg.name, wpath, seed=seed)
                _DESCRIBED[key] = (m.weights_sha256, str(m.weights_source), int(m.embed_dim))
            else:
                from xterrafm.hub import describe_source
                from xterrafm.weights import read_weights, state_dict_sha256

                _DESCRIBED[key] = (state_dict_sha256(read_weights(wpath)), describe_source(wpath),
                                   cfg.embed_dim)
        return _DESCRIBED[key]


# -- re-blocking -------------------------------------------------------------------------------
def _reblock_axis(arr: da.Array, axis: int, spans: list) -> da.Array:
    """Blocks along ``axis`` holding exactly pixels ``[pix_start, min(pix_stop, size))`` per span.

    Contiguous non-overlapping spans are a plain rechunk; overlapping ones (``stride < tile``)
    repeat the halo pixels through a concatenation of slices, then a rechunk.
    """
    size = arr.shape[axis]
    bounds = [(s.pix_start, min(s.pix_stop, size)) for s in spans]
    sizes = tuple(b - a for a, b in bounds)
    contiguous = all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    if contiguous and bounds[0][0] == 0 and bounds[-1][1] == size:
        return arr.rechunk({axis: sizes})
    index = [slice(None)] * arr.ndim
    pieces = []
    for a, b in bounds:
        index[axis] = slice(a, b)
        pieces.append(arr[tuple(index)])
    return da.concatenate(pieces, axis=axis).rechunk({axis: sizes})


def _default_cells(chunks: tuple[int, ...], axis: AxisWindows) -> int:
    """Output cells per block: about one input chunk's worth of pixels (at least a window)."""
    pixels = max(int(chunks[0]), axis.tile)
    return max(1, int(round(pixels / axis.cell_pixels)))


def _block_task(block: np.ndarray, *, spec: ModelSpec, y: AxisWindows, x: AxisWindows,
                min_valid: float, block_info: dict | None = None) -> np.ndarray:
    (oy0, oy1), (ox0, ox1) = block_info[None]["array-location"][2:]
    return embed_block(block, spec=spec, y=y, x=x, y_span=y.span(oy0, oy1),
                       x_span=x.span(ox0, ox1), min_valid=min_valid)


def embed(cube: xr.DataArray | xr.Dataset, model: str = "terrafm-b", weights: Any = None,
          modality: str | None = None, level: str = "tile", tile: int = 224,
          stride: int | None = None, batch_size: int | None = None, device: str = "auto",
          precision: str = "auto", normalize: str | None = "terrafm-v1",
          min_valid: float = 0.5, *, seed: int = 0, block_cells: int | tuple[int, int] | None = None,
          resources: Any = "auto", client: Any = None, torch_threads: int | None = None
          ) -> xr.DataArray:
    """Embed a lazy cube with TerraFM, lazily.

    Parameters
    ----------
    cube : DataArray or Dataset
        ``(time, band, y, x)`` (or ``(band, y, x)``) float32 cube in physical units (S2
        reflectance, S1 linear power) with NaN for no data and a CRS (``cube.odc.geobox``),
        as :mod:`xterrafm.io` returns; or a Dataset with one variable per band.
    model : str
        Variant: ``"terrafm-b"``, ``"terrafm-l"``, ``"terrafm-tiny"``.
    weights : path, "hf" or None
        Weights file every worker can read (``.safetensors``/``.pth``), ``"hf"``, or None for
        the seeded random initialisation (same weights in every process; recorded in attrs).
    modality : str, optional
        Defaults to ``cube.attrs["modality"]``.
    level : {"tile", "patch"}
        ``"tile"``: one CLS embedding per ``tile`` x ``tile`` window every ``stride`` px.
        ``"patch"``: patch tokens, one per 16 x 16 px, on the input grid zoomed out by 16.
    tile : int
        Window side in pixels (multiple of 16).
    stride : int, optional
        Window step in pixels (default ``tile``).
    batch_size : int, optional
        Windows per forward pass (default 8 on CPU, 64 on CUDA).
    device : str
        ``"auto"`` (CUDA when a worker has it), ``"cpu"``, ``"cuda"``.
    precision : str
        ``"auto"`` (fp32 on CPU, bf16 on CUDA), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    normalize : str or None
        Normalisation spec (default ``"terrafm-v1"``); None if the cube is already normalised.
    min_valid : float
        Windows (tile level) or patches (patch level) with a smaller valid fraction are NaN.
    seed : int
        Seed of the random initialisation when ``weights`` is None.
    block_cells : int or (int, int), optional
        Output cells per dask block along (y, x); default about one input chunk.
    resources : "auto", None or dict
        Resources model tasks ask for; ``"auto"``: ``{"GPU": 1}`` when workers of the active
        distributed client declare a ``GPU`` resource. Dask's low-level task fusion drops such
        annotations, so when a request is made and no ``array_optimize`` is configured, this
        installs :func:`~xterrafm.embedding.scheduling.optimize_keeping_annotations` as the
        session's array optimiser (the same optimisation, annotations kept).
    client : distributed.Client, optional
        Client inspected for ``resources="auto"`` (default: the current one).
    torch_threads : int, optional
        Torch threads per worker process (default: its share of the cores).

    Returns
    -------
    DataArray
        Lazy, dask-backed, float32, dims ``(time, embedding, y, x)`` (no ``time`` if the input
        had none), ``y``/``x`` at the centres of windows (tile) or patches (patch) in the input
        CRS, ``spatial_ref`` coordinate, attrs recording the provenance.
    """
    had_time = (isinstance(cube, xr.DataArray) and "time" in cube.dims) or (
        isinstance(cube, xr.Dataset) and "time" in cube.dims)
    cube, modality = as_band_cube(cube, modality)
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}; got {level!r}")
    if not 0.0 <= float(min_valid) <= 1.0:
        raise ValueError(f"min_valid must be between 0 and 1; got {min_valid}")
    tile = int(tile)
    stride = tile if stride is None else int(stride)
    try:
        import odc.geo.xr  # noqa: F401  (registers .odc)

        geobox = cube.odc.geobox
    except Exception as err:  # noqa: BLE001 - any failure means: no usable grid
        raise ValueError(f"the cube has no usable geo-referencing (CRS + regular y/x): {err}") from err
    if geobox is None or geobox.crs is None:
        raise ValueError("the cube has no CRS; write one with cube.rio.write_crs(...) or load "
                         "it with xterrafm.io")
    ny_px, nx_px = cube.sizes["y"], cube.sizes["x"]
    y_ax = AxisWindows(ny_px, tile, stride, level)
    x_ax = AxisWindows(nx_px, tile, stride, level)

    sha, source, dim = describe_model(model, weights, seed)
    from xterrafm.models import get_config

    spec = ModelSpec(model=get_config(model).name, weights=_weights_arg(weights, model),
                     weights_sha256=sha, modality=modality, normalize=normalize, seed=int(seed),
                     device=device, precision=precision, batch_size=batch_size,
                     torch_threads=torch_threads, weights_stamp=weights_stamp(weights))

    data = cube.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, -1, 2048, 2048))
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    data = data.rechunk({1: -1})
    if block_cells is None:
        cells = (_default_cells(data.chunks[2], y_ax), _default_cells(data.chunks[3], x_ax))
    elif isinstance(block_cells, int):
        cells = (block_cells, block_cells)
    else:
        cells = tuple(int(c) for c in block_cells)
    y_spans, x_spans = y_ax.spans(cells[0]), x_ax.spans(cells[1])
    pixels = _reblock_axis(_reblock_axis(data, 2, y_spans), 3, x_spans)

    out_chunks = (pixels.chunks[0], (dim,), y_ax.out_chunks(cells[0]), x_ax.out_chunks(cells[1]))
    token = dask.base.tokenize(pixels.name, spec, y_ax, x_ax, float(min_valid))
    req = gpu_resources(resources, client)
    if req and dask.config.get("array_optimize", None) is None:
        # dask's low-level fusion drops layer annotations; keep them for every later compute
        # of this session (same tasks, annotations kept: see scheduling.keep_annotations)
        dask.config.set(array_optimize=optimize_keeping_annotations)
    annotate = dask.annotate(resources=req) if req else contextlib.nullcontext()
    with annotate:
        emb = da.map_blocks(_block_task, pixels, dtype=np.float32, chunks=out_chunks,
                            meta=np.empty((0, 0, 0, 0), dtype=np.float32),
                            name=f"terrafm-embed-{token}", spec=spec, y=y_ax, x=x_ax,
                            min_valid=float(min_valid))

    from odc.geo.xr import xr_coords

    out_gbox = output_geobox(geobox, y_ax, x_ax)
    coords: dict[Hashable, Any] = dict(xr_coords(out_gbox, crs_coord_name="spatial_ref"))
    coords["time"] = ("time", cube["time"].values, dict(cube["time"].attrs))
    coords[EMBED_DIM] = np.arange(dim)
    attrs = {
        "model": spec.model,
        "weights": source,
        "weights_sha256": sha,
        "seed": int(seed),
        "modality": modality,
        "bands": list(get_modality(modality).band_names),
        "normalization": normalize if normalize is not None else "none",
        "level": level,
        "tile": tile,
        "stride": stride,
        "patch_size": y_ax.patch,
        "min_valid": float(min_valid),
        "fill": _FILL_NOTE,
        "device": device,
        "precision": precision,
        "xterrafm_version": _version(),
    }
    out = xr.DataArray(emb, dims=("time", EMBED_DIM, "y", "x"), coords=coords,
                       name="embeddings", attrs=attrs)
    out.encoding["grid_mapping"] = "spatial_ref"
    if not had_time:
        out = out.isel(time=0, drop=True)
    return out


def _version() -> str:
    from xterrafm._version import __version__

    return str(__version__)
