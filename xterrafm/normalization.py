"""Named, versioned input normalisation for TerraFM (numpy, torch and xarray/dask inputs).

A *spec* holds, per modality, the band order, a transform and per-band ``mean``/``std`` in the
transformed domain:

- Sentinel-2 (``s2_l2a``, ``s2_l1c``): input reflectance, ``(x - mean) / std``.
- Sentinel-1 (``s1``): input linear power, ``(10 * log10(max(x, min_linear_power)) - mean) / std``.

The default spec ``"terrafm-v1"`` ships in ``xterrafm/resources/normalization/terrafm-v1.json``
with the source of its statistics. :func:`compute_stats` computes a spec from any cube with
dask (also reachable as ``xterrafm.normalize.compute_stats``); :func:`normalize` accepts the
returned dict, or a JSON file written by :func:`save_spec`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from xterrafm._imports import import_gate
from xterrafm.bands import check_modality, get_modality

with import_gate():
    import numpy as np

__all__ = [
    "DEFAULT_SPEC",
    "available_specs",
    "compute_stats",
    "load_spec",
    "normalize",
    "save_spec",
]

#: Name of the default normalisation spec.
DEFAULT_SPEC = "terrafm-v1"
_RESOURCE_PACKAGE = "xterrafm.resources.normalization"
_TRANSFORMS = ("identity", "10log10")
_DEFAULT_MIN_POWER = 1e-6  # -60 dB: floor for non-positive S1 power before the logarithm

ArrayT = TypeVar("ArrayT")


def _resource_dir() -> Any:
    return resources.files("xterrafm").joinpath("resources", "normalization")


def available_specs() -> list[str]:
    """Names of the normalisation specs shipped with xterrafm."""
    return sorted(p.name[: -len(".json")] for p in _resource_dir().iterdir()
                  if p.name.endswith(".json"))


def _validate_spec(spec: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Check a spec dict's structure; ``ValueError`` naming ``origin`` and the fault."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("modalities"), Mapping):
        raise ValueError(f"normalisation spec {origin} must be a mapping with a 'modalities' mapping")
    out = copy.deepcopy(dict(spec))
    out.setdefault("name", "custom")
    for mod, entry in spec["modalities"].items():
        check_modality(mod)
        for key in ("bands", "mean", "std"):
            if key not in entry:
                raise ValueError(f"normalisation spec {origin}: modality {mod!r} lacks {key!r}")
        n = len(entry["bands"])
        if len(entry["mean"]) != n or len(entry["std"]) != n:
            raise ValueError(f"normalisation spec {origin}: modality {mod!r} has {n} bands but "
                             f"{len(entry['mean'])} means and {len(entry['std'])} stds")
        std = np.asarray(entry["std"], dtype=np.float64)
        mean = np.asarray(entry["mean"], dtype=np.float64)
        if not (np.isfinite(std).all() and (std > 0).all() and np.isfinite(mean).all()):
            raise ValueError(f"normalisation spec {origin}: modality {mod!r} needs finite means "
                             f"and positive finite stds, got mean={entry['mean']} std={entry['std']}")
        transform = entry.get("transform", "10log10" if mod == "s1" else "identity")
        if transform not in _TRANSFORMS:
            raise ValueError(f"normalisation spec {origin}: modality {mod!r} has unknown transform "
                             f"{transform!r}; expected one of {_TRANSFORMS}")
        out["modalities"][mod] = {**entry, "transform": transform}
    return out


def load_spec(spec: str | Path | Mapping[str, Any] = DEFAULT_SPEC) -> dict[str, Any]:
    """Resolve a normalisation spec to a validated dict.

    Parameters
    ----------
    spec : str, pathlib.Path or mapping
        A shipped spec name (see :func:`available_specs`), a path to a JSON spec file, or a
        spec dict (e.g. from :func:`compute_stats`).

    Returns
    -------
    dict
        ``{"name", "modalities": {modality: {"bands", "mean", "std", "transform", ...}}, ...}``.

    Raises
    ------
    ValueError
        Unknown spec name, unreadable file or malformed spec; the message names it.
    """
    if isinstance(spec, Mapping):
        return _validate_spec(spec, f"dict {spec.get('name', 'custom')!r}")
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if isinstance(spec, Path) or text.endswith(".json") or Path(text).is_file():
            path = Path(text)
            if not path.is_file():
                raise ValueError(f"normalisation spec file {text!r} does not exist")
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"normalisation spec file {text!r} is not valid JSON: {err}") from err
            return _validate_spec(data, f"file {text!r}")
        names = available_specs()
        if text not in names:
            raise ValueError(f"unknown normalisation spec {text!r}; shipped specs are {names}, or "
                             "pass a dict from compute_stats() or a JSON file path")
        data = json.loads(_resource_dir().joinpath(f"{text}.json").read_text())
        return _validate_spec(data, repr(text))
    raise ValueError(f"normalisation spec must be a name, a path or a dict, got {type(spec).__name__}")


def save_spec(spec: Mapping[str, Any], path: str | Path) -> Path:
    """Write a spec dict as JSON (validated first); returns the path."""
    valid = _validate_spec(spec, f"dict {spec.get('name', 'custom')!r}")
    path = Path(path)
    path.write_text(json.dumps(valid, indent=2))
    return path


def _modality_entry(spec: Mapping[str, Any], modality: str) -> dict[str, Any]:
    entry = spec["modalities"].get(modality)
    if entry is None:
        raise ValueError(f"normalisation spec {spec.get('name')!r} has no statistics for modality "
                         f"{modality!r}; it covers {list(spec['modalities'])}")
    return entry


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "dim")


def _is_xarray(x: Any) -> bool:
    return type(x).__module__.startswith("xarray.") and hasattr(x, "dims")


def _band_order(labels: Sequence[Any], modality: str, spec_bands: Sequence[str]) -> list[int]:
    """For each band label of the input, its index in ``spec_bands`` (labels may be aliases)."""
    mspec = get_modality(modality)
    canonical = []
    for lab in labels:
        try:
            canonical.append(mspec.band(str(lab)).name)
        except KeyError:
            raise ValueError(f"band {lab!r} of the input is not a band of modality {modality!r} "
                             f"(expected {list(spec_bands)})") from None
    missing = [b for b in spec_bands if b not in canonical]
    if missing:
        raise ValueError(f"input for modality {modality!r} lacks bands {missing}; "
                         f"has {list(labels)}")
    return [list(spec_bands).index(c) for c in canonical]


def normalize(x: ArrayT, modality: str, spec: str | Path | Mapping[str, Any] = DEFAULT_SPEC) -> ArrayT:
    """Normalise physical-unit inputs for TerraFM.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor or xarray.DataArray
        Sentinel-2 reflectance (unitless, e.g. 0.12) or Sentinel-1 linear power. Arrays and
        tensors have bands on axis -3, shape ``(..., C, H, W)``; a DataArray has a ``band`` dim
        (any position; labelled bands may be in any order and use aliases such as ``blue``).
        NaN marks nodata and stays NaN. dask-backed DataArrays stay lazy.
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``.
    spec : str, pathlib.Path or mapping
        Spec name (default ``"terrafm-v1"``), JSON path, or dict from :func:`compute_stats`.

    Returns
    -------
    Same type as ``x``
        Standardised values. Floating inputs keep their dtype (torch half types are computed
        in float32 and cast back); integer inputs give float32. Torch tensors stay on their
        device. DataArrays keep dims/coords and get ``attrs["normalization"]`` = spec name.

    Raises
    ------
    ValueError
        Unknown modality or spec, a spec without this modality, or a band count / band labels
        that do not match the modality.
    """
    modality = check_modality(modality)
    spec_d = load_spec(spec)
    entry = _modality_entry(spec_d, modality)
    bands = list(entry["bands"])
    n = len(bands)
    mean = np.asarray(entry["mean"], dtype=np.float64)
    std = np.asarray(entry["std"], dtype=np.float64)
    log = entry["transform"] == "10log10"
    floor = float(entry.get("min_linear_power", _DEFAULT_MIN_POWER))
    if _is_xarray(x):
        return _normalize_xarray(x, modality, spec_d, bands, mean, std, log, floor)
    if _is_torch(x):
        return _normalize_torch(x, modality, n, mean, std, log, floor)
    if isinstance(x, np.ndarray) or type(x).__module__.startswith("dask") or hasattr(
        x, "__array__"
    ):
        # numpy arrays, or dask arrays (kept lazy: numpy ufuncs dispatch to dask)
        arr = x if type(x).__module__.startswith("dask") else np.asarray(x)
        _check_axis(arr.ndim, arr.shape, modality, n)
        dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float32)
        a = arr.astype(dtype, copy=False)
        if log:
            a = 10.0 * np.log10(np.maximum(a, dtype.type(floor)))
        shape = (n, 1, 1)
        return ((a - mean.astype(dtype).reshape(shape)) / std.astype(dtype).reshape(shape)).astype(
            dtype, copy=False)
    raise ValueError(f"normalize expects a numpy array, torch tensor or xarray DataArray, "
                     f"got {type(x).__name__}")


def _check_axis(ndim: int, shape: Sequence[int], modality: str, n: int) -> None:
    if ndim < 3 or shape[-3] != n:
        raise ValueError(f"modality {modality!r} expects {n} bands on axis -3 of a (..., {n}, H, W) "
                         f"input; got shape {tuple(shape)}")


def _normalize_torch(x: Any, modality: str, n: int, mean: np.ndarray, std: np.ndarray,
                     log: bool, floor: float) -> Any:
    with import_gate():
        import torch

    _check_axis(x.dim(), tuple(x.shape), modality, n)
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    work = torch.float64 if out_dtype == torch.float64 else torch.float32
    a = x.to(work)
    if log:
        a = 10.0 * torch.log10(torch.clamp(a, min=floor))  # clamp keeps NaN
    m = torch.as_tensor(mean, dtype=work, device=x.device).view(n, 1, 1)
    s = torch.as_tensor(std, dtype=work, device=x.device).view(n, 1, 1)
    return ((a - m) / s).to(out_dtype)


def _normalize_xarray(x: Any, modality: str, spec_d: Mapping[str, Any], bands: list[str],
                      mean: np.ndarray, std: np.ndarray, log: bool, floor: float) -> Any:
    with import_gate():
        import xarray as xr

    if "band" not in x.dims:
        raise ValueError(f"normalize needs a 'band' dim on DataArray inputs; got dims {x.dims}")
    nb = x.sizes["band"]
    if "band" in x.coords and x["band"].dtype.kind in "OUS":
        idx = _band_order(list(x["band"].values), modality, bands)
    elif nb == len(bands):
        idx = list(range(nb))
    else:
        raise ValueError(f"modality {modality!r} expects {len(bands)} bands on dim 'band'; "
                         f"got {nb}")
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    m = xr.DataArray(mean[idx].astype(dtype), dims=("band",))
    s = xr.DataArray(std[idx].astype(dtype), dims=("band",))
    a = x.astype(dtype, copy=False)
    if log:
        a = 10.0 * np.log10(np.maximum(a, dtype.type(floor)))
    out = ((a - m) / s).astype(dtype, copy=False)
    out = out.transpose(*x.dims)
    out.attrs = {**x.attrs, "normalization": str(spec_d.get("name", "custom"))}
    out.name = x.name
    return out


def compute_stats(
    cube: Any,
    modality: str,
    *,
    name: str = "custom",
    band_dim: str = "band",
) -> dict[str, Any]:
    """Per-band mean and std of a cube in the normalised domain, computed with dask.

    Parameters
    ----------
    cube : xarray.DataArray or array-like
        Physical-unit data (S2 reflectance, S1 linear power). A DataArray (numpy- or
        dask-backed) with a ``band_dim`` dim whose labels name the modality's bands (any order,
        aliases allowed; unlabelled bands are taken in TerraFM order), or an array with bands on
        axis -3. NaN pixels are ignored.
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``. S1 statistics are of ``10 * log10(power)``.
    name : str
        Name recorded in the returned spec (and by :func:`normalize` in outputs' attrs).
    band_dim : str
        Name of the band dim of a DataArray.

    Returns
    -------
    dict
        A spec accepted by :func:`normalize` / :func:`save_spec`: ``{"name", "source",
        "modalities": {modality: {"bands", "mean", "std", "count", "transform", ...}}}``;
        bands in TerraFM order, ``count`` is the number of valid pixels per band.

    Raises
    ------
    ValueError
        Unknown modality, wrong bands, or a band with no valid pixel or zero variance.
    """
    with import_gate():
        import dask
        import dask.array as da

    modality = check_modality(modality)
    mspec = get_modality(modality)
    bands = mspec.band_names
    log = modality == "s1"
    if _is_xarray(cube):
        if band_dim not in cube.dims:
            raise ValueError(f"compute_stats needs a {band_dim!r} dim; got dims {cube.dims}")
        arr = cube.transpose(band_dim, ...).data
        if band_dim in cube.coords and cube[band_dim].dtype.kind in "OUS":
            order = _band_order(list(cube[band_dim].values), modality, bands)
            pos = [order.index(i) for i in range(len(bands))]
        else:
            pos = list(range(len(bands)))
        source = {"item_ids": list(cube.attrs.get("item_ids", []))}
    else:
        a = cube
        _check_axis(np.ndim(a), np.shape(a), modality, len(bands))
        arr = da.moveaxis(da.asarray(a), -3, 0)
        pos = list(range(len(bands)))
        source = {}
    if arr.shape[0] != len(bands):
        raise ValueError(f"modality {modality!r} expects {len(bands)} bands; got {arr.shape[0]}")
    x = da.asarray(arr).astype(np.float64)[pos]
    if log:
        x = 10.0 * da.log10(da.maximum(x, _DEFAULT_MIN_POWER))
    valid = ~da.isnan(x)
    axes = tuple(range(1, x.ndim))  # reduce all but the band axis (no reshape: keeps chunks)
    count = valid.sum(axis=axes)
    total = da.where(valid, x, 0.0).sum(axis=axes)
    total_sq = da.where(valid, x * x, 0.0).sum(axis=axes)
    count, total, total_sq = dask.compute(count, total, total_sq)
    for b, c in zip(bands, count, strict=True):
        if c == 0:
            raise ValueError(f"compute_stats: band {b!r} of modality {modality!r} has no valid pixel")
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    std = np.sqrt(var)
    for b, s in zip(bands, std, strict=True):
        if not s > 0:
            raise ValueError(f"compute_stats: band {b!r} of modality {modality!r} has zero variance")
    entry: dict[str, Any] = {
        "input_units": mspec.units,
        "transform": "10log10" if log else "identity",
        "bands": bands,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "count": [int(v) for v in count],
    }
    if log:
        entry["min_linear_power"] = _DEFAULT_MIN_POWER
    return {
        "name": name,
        "description": f"statistics computed by xterrafm.normalization.compute_stats for {modality}",
        "source": {"method": "xterrafm.normalization.compute_stats", **source},
        "modalities": {modality: entry},
    }


# ``xterrafm.normalize.compute_stats``: the statistics function hangs off the normalize function.
normalize.compute_stats = compute_stats  # type: ignore[attr-defined]
