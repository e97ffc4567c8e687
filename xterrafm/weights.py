"""Loading, checking and converting TerraFM weights safely.

* ``load_model(name, weights)`` builds a :class:`~xterrafm.models.TerraFM` and fills it from
  a ``.pth``/``.pt`` file (read with ``torch.load(weights_only=True)``: no pickled code runs),
  a ``.safetensors`` file, ``"hf"`` (TerraFM-B.pth of the ``MBZUAI/TerraFM`` Hugging Face repo,
  downloaded into the user cache and checked, see :mod:`xterrafm.hub`), an in-memory
  state_dict, or a seeded random initialisation. Files of a Hugging Face cache are checked
  against their declared SHA-256 and the pin (:func:`xterrafm.hub.check_hub_file`) whenever
  they are read, in every process.
* Wrapper prefixes (``module.``, ``backbone.``, DINO ``teacher.``/``student.``) are stripped;
  any missing, unexpected or mis-shaped key is refused, except the fusion parameters that the
  published checkpoint does not hold (they keep fresh values; a warning says so).
* The loaded model records ``weights_sha256``: the SHA-256 of the safetensors serialisation of
  the tensors it was given (exactly the bytes :func:`convert_weights` writes for them).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.errors import UnsafeWeightsError, WeightsError, WeightsMismatchError
from xterrafm.hub import PUBLISHED, download_published_weights
from xterrafm.models.config import CONFIGS, TerraFMConfig, get_config
from xterrafm.models.terrafm import FUSION_PREFIX, TerraFM
from xterrafm.models.vit import init_vit_weights

with import_gate():
    import torch
    from torch import Tensor, nn

__all__ = [
    "HF_FILENAME",
    "HF_REPO_ID",
    "UnsafeWeightsError",
    "WeightsError",
    "WeightsMismatchError",
    "canonical_state_dict",
    "check_state_dict",
    "convert_weights",
    "download_published_weights",
    "load_model",
    "read_weights",
    "state_dict_sha256",
]

#: Repository and file of the published TerraFM-B checkpoint (the pin: :data:`xterrafm.hub.PUBLISHED`).
HF_REPO_ID = PUBLISHED["terrafm-b"].repo_id
HF_FILENAME = PUBLISHED["terrafm-b"].filename
_WRAPPER_PREFIXES = ("module.", "backbone.", "teacher.", "student.", "_orig_mod.")
_CONTAINER_KEYS = ("teacher", "state_dict", "model", "student")


# -- reading ---------------------------------------------------------------------------------
def _unpickler_reason(message: str) -> str:
    """The line of a ``weights_only`` failure that names the offending object (never torch's
    advice to retry with ``weights_only=False``, which would run the file's code)."""
    if "WeightsUnpickler error:" in message:
        tail = message.split("WeightsUnpickler error:", 1)[1].strip()
        return tail.split(". Please use")[0].split("\n")[0].strip()
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "blocked" in ln:
            return ln.split(". Please use")[0]
    safe = [ln for ln in lines if "weights_only" not in ln and "trusted source" not in ln]
    return safe[0] if safe else "unknown reason"


#: What ``torch.load(weights_only=True)`` says when its restricted unpickler refused an object
#: (a global outside its allow-list, a blocked module): the file needs full unpickling.
_UNSAFE_MARKERS = ("WeightsUnpickler", "Weights only load failed", "Unsupported global",
                   "unsupported GLOBAL", "is blocked")


def _read_torch_file(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not any(marker in str(err) for marker in _UNSAFE_MARKERS):
            # not a pickle torch understands
            raise WeightsError(f"cannot read {path} as a torch checkpoint: "
                               f"{_unpickler_reason(str(err))}") from None
        raise UnsafeWeightsError(
            f"refusing to load {path}: torch.load(weights_only=True) found pickle content "
            f"beyond tensors and plain containers ({_unpickler_reason(str(err))}). Unpickling "
            "it could run arbitrary code, so nothing was executed. Save trusted checkpoints as "
            "a plain state_dict (torch.save(model.state_dict())) or as .safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise WeightsError(
            f"cannot read {path} as a torch checkpoint: {_unpickler_reason(str(err))}"
        ) from err


def read_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a weights file without executing code and return its canonical state_dict.

    Parameters
    ----------
    path : path-like
        ``.safetensors``, or ``.pth``/``.pt``/``.bin``/``.ckpt`` (torch zip or legacy format,
        read with ``torch.load(weights_only=True)``).

    Returns
    -------
    dict
        ``{key: CPU tensor}`` with wrapper prefixes stripped (:func:`canonical_state_dict`).

    Raises
    ------
    FileNotFoundError
        No such file.
    UnsafeWeightsError
        The file would run code when unpickled.
    WeightsError
        Unknown suffix or no state_dict inside (a ``ValueError``).
    WeightsMismatchError
        A file of a Hugging Face cache fails its hash check (:func:`xterrafm.hub.check_hub_file`).
    """
    from xterrafm.hub import check_hub_file

    p = check_hub_file(Path(path).expanduser())
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        with import_gate():
            from safetensors.torch import load_file

        try:
            obj: object = load_file(str(p), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise WeightsError(f"cannot read {p} as a .safetensors file (truncated or not "
                               f"safetensors?): {err}") from None
    elif suffix in {".pth", ".pt", ".bin", ".ckpt"}:
        obj = _read_torch_file(p)
    else:
        raise WeightsError(
            f"unknown weights format {p.name!r}: expected .pth, .pt or .safetensors"
        )
    return canonical_state_dict(obj)


def _unwrap_container(obj: object) -> Mapping:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"expected a state_dict (mapping of tensors); got {type(obj).__name__}")
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        return obj
    for key in _CONTAINER_KEYS:  # DINO checkpoints: {"teacher": ..., "student": ..., ...}
        if isinstance(obj.get(key), Mapping):
            return _unwrap_container(obj[key])
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(f"no tensors found in checkpoint; top-level keys: {list(obj)[:10]}")
    return tensors


def canonical_state_dict(obj: object) -> dict[str, Tensor]:
    """Checkpoint object -> ``{published key: tensor}``.

    Unwraps containers (``{"teacher": sd}``, ``{"state_dict": sd}``, ``{"model": sd}``), keeps
    the teacher of flat DINO dicts that hold both ``teacher.*`` and ``student.*``, strips
    ``module.``, ``backbone.``, ``teacher.``/``student.`` prefixes and, when the encoder sat under
    ``backbone.``, drops the keys outside it (e.g. a DINO projection ``head.*``).
    """
    sd = dict(_unwrap_container(obj))
    if any(k.startswith("teacher.") for k in sd) and any(k.startswith("student.") for k in sd):
        sd = {k: v for k, v in sd.items() if k.startswith("teacher.")}
    stripped: dict[str, Tensor] = {}
    in_backbone: set[str] = set()
    for key, value in sd.items():
        k = str(key)
        while k.startswith(_WRAPPER_PREFIXES):
            prefix = next(p for p in _WRAPPER_PREFIXES if k.startswith(p))
            k = k[len(prefix):]
            if prefix == "backbone.":
                in_backbone.add(k)
        if k in stripped:
            raise WeightsError(f"checkpoint key {key!r} collides with another after stripping "
                             f"wrapper prefixes (as {k!r})")
        stripped[k] = value
    if in_backbone:
        return {k: v for k, v in stripped.items() if k in in_backbone}
    return stripped


# -- checking --------------------------------------------------------------------------------
def check_state_dict(model: TerraFM, sd: Mapping[str, Tensor]) -> list[str]:
    """Verify that ``sd`` fits ``model``; return the fusion keys it lacks.

    Raises
    ------
    WeightsMismatchError
        Listing missing keys (other than fusion keys), unexpected keys and shape mismatches.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in sd]
    missing_core = [k for k in missing if not k.startswith(FUSION_PREFIX)]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {expected[k]}"
        for k, v in sd.items() if k in expected and tuple(v.shape) != expected[k]
    ]
    if missing_core or unexpected or shapes:

        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

        parts = []
        if missing_core:
            parts.append(f"missing keys: {show(missing_core)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {show(shapes)}")
        raise WeightsMismatchError(
            f"weights do not fit {model.config.name} ({len(expected)} keys): " + "; ".join(parts)
        )
    return missing


# -- hashing / conversion --------------------------------------------------------------------
def _serialise(sd: Mapping[str, Tensor]) -> bytes:
    with import_gate():
        from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in sd.items()})


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.float64: "F64"}


def _single_dtype_header(sd: Mapping[str, Tensor]) -> tuple[bytes, list[str]] | None:
    """The safetensors header of ``sd`` and its data order, for a state_dict of one float dtype.

    With one dtype, the format orders tensors by name (byte order) and writes a compact JSON
    header padded with spaces to a multiple of 8 bytes. Mixed dtypes (whose order depends on
    the library's dtype ranking) return ``None``.
    """
    dtypes = {v.dtype for v in sd.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _SAFETENSORS_DTYPES:
        return None
    code = _SAFETENSORS_DTYPES[next(iter(dtypes))]
    names = sorted(sd, key=lambda k: k.encode())
    entries, offset = [], 0
    for k in names:
        nbytes = sd[k].numel() * sd[k].element_size()
        meta = {"dtype": code, "shape": list(sd[k].shape), "data_offsets": [offset, offset + nbytes]}
        entries.append(json.dumps(k) + ":" + json.dumps(meta, separators=(",", ":")))
        offset += nbytes
    header = ("{" + ",".join(entries) + "}").encode()
    return header + b" " * (-len(header) % 8), names


def state_dict_sha256(sd: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of the safetensors serialisation of ``sd`` (no metadata; deterministic).

    Equals the SHA-256 of the file :func:`convert_weights` writes. For the usual single-dtype
    state_dict the digest is streamed over the tensors' memory (no serialised copy: ViT-B is
    450 MB, hashed once per Dask worker).
    """
    layout = _single_dtype_header(sd)
    if layout is None:
        return hashlib.sha256(_serialise(sd)).hexdigest()
    header, names = layout
    digest = hashlib.sha256(len(header).to_bytes(8, "little"))
    digest.update(header)
    for k in names:
        t = sd[k].detach().to("cpu").contiguous()
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _infer_config(sd: Mapping[str, Tensor]) -> TerraFMConfig:
    cls = sd.get("cls_token")
    if cls is None:
        raise WeightsMismatchError("checkpoint has no 'cls_token'; not a TerraFM state_dict")
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    stems = [v for k, v in sd.items() if k.startswith("patch_embed.conv2d_") and v.ndim == 4]
    patch = int(stems[0].shape[-1]) if stems else None
    for cfg in CONFIGS.values():
        if (cfg.embed_dim == cls.shape[-1] and cfg.depth == depth
                and patch in (None, cfg.patch_size)):
            return cfg
    raise WeightsMismatchError(
        f"checkpoint width {cls.shape[-1]} / depth {depth} / patch {patch} px matches no known "
        "TerraFM variant"
    )


def convert_weights(src: str | os.PathLike | Mapping[str, Tensor], dst: str | os.PathLike,
                    name: str | TerraFMConfig | None = None, overwrite: bool = False) -> str:
    """Write a checked, canonical safetensors copy of a TerraFM checkpoint.

    Parameters
    ----------
    src : path-like or mapping
        ``.pth``/``.pt``/``.safetensors`` file (read safely) or a state_dict.
    dst : path-like
        Output ``.safetensors`` path. Written atomically (temporary file, then rename).
    name : str, TerraFMConfig or None
        Variant to check against; inferred from the tensor shapes when None.
    overwrite : bool
        Replace an existing ``dst`` (default False: refuse).

    Returns
    -------
    str
        SHA-256 (hex) of the written file; equals ``load_model(..., weights=dst).weights_sha256``.
    """
    sd = read_weights(src) if not isinstance(src, Mapping) else canonical_state_dict(src)
    cfg = get_config(name) if name is not None else _infer_config(sd)
    with torch.device("meta"):
        skeleton = TerraFM(cfg)
    check_state_dict(skeleton, sd)
    out = Path(dst).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise ValueError(f"dst must end in .safetensors; got {out.name!r}")
    if not isinstance(src, Mapping) and out.resolve() == Path(src).expanduser().resolve():
        raise ValueError(f"dst {out} is the source file")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    data = _serialise(sd)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


# -- building --------------------------------------------------------------------------------
def _model_for_weights(cfg: TerraFMConfig, sd: Mapping[str, Tensor], seed: int,
                       copy: bool) -> TerraFM:
    """Build the model straight from ``sd`` without paying for a random initialisation.

    The module is created on the ``meta`` device (no memory, no init: ViT-B's init alone
    takes seconds, once per Dask worker) and the checkpoint tensors are assigned to it.
    Fusion parameters a published checkpoint lacks get fresh values, seeded by ``seed``.
    ``copy`` clones the tensors (for a state_dict the caller still holds), so that the
    model never shares storage with it.
    """
    with torch.device("meta"):
        model = TerraFM(cfg)
    absent = check_state_dict(model, sd)
    if absent:
        fusion = model.patch_embed.fusion.to_empty(device="cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fusion.apply(init_vit_weights)
            nn.init.trunc_normal_(fusion.queries, std=0.02)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    tensors = {k: v.detach().to(dtype=dtypes[k]) for k, v in sd.items()}
    if copy:
        tensors = {k: v.clone() for k, v in tensors.items()}
    # fusion keys may be missing: fresh values, with a warning
    model.load_state_dict({k: v.contiguous() for k, v in tensors.items()}, strict=True,
                          assign=True)
    return model


def load_model(
    name: str | TerraFMConfig = "terrafm-b",
    weights: str | os.PathLike | Mapping[str, Tensor] | None = None,
    device: str | torch.device | None = None,
    *,
    precision: str = "fp32",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
) -> TerraFM:
    """Build a TerraFM encoder in eval mode, optionally with weights.

    Parameters
    ----------
    name : str or TerraFMConfig
        ``"terrafm-b"`` (default), ``"terrafm-l"``, ``"terrafm-tiny"`` or ``"terrafm-tiny-p8"``.
    weights : None, path-like, ``"hf"`` or mapping
        ``None``: random initialisation, deterministic for ``seed`` (no pretrained knowledge:
        for tests and pipelines only). A ``.pth``/``.pt`` (``torch.load(weights_only=True)``)
        or ``.safetensors`` path. ``"hf"``: the pinned published file of the variant
        (:func:`xterrafm.hub.published_weights`; TerraFM-B.pth of the MBZUAI/TerraFM Hugging
        Face repo), cached in the user cache (``cache_dir`` to override) and checked. A
        state_dict mapping.
    device : str, torch.device or None
        Where to put the model (default CPU).
    precision : str
        ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast for the forward pass.
    seed : int
        Seed of the random initialisation (also of the fusion parameters when a checkpoint
        lacks them). The global RNG is left untouched.
    cache_dir : path-like, optional
        Hugging Face cache directory for ``weights="hf"``.
    sha256 : str, optional
        The weights' SHA-256 when the caller already knows it (e.g. Dask workers that find the
        file unchanged since the client hashed it); taken as ``model.weights_sha256`` instead
        of hashing the tensors again. Ignored for random initialisation.

    Returns
    -------
    TerraFM
        In eval mode, with ``model.config`` and ``model.weights_sha256`` (SHA-256 of the
        safetensors serialisation of the given tensors; of the full random state_dict for
        ``weights=None``) and ``model.weights_source`` (a description of where they came from).

    Raises
    ------
    WeightsMismatchError
        Keys or shapes do not fit (fusion keys may be missing; they keep fresh values).
    UnsafeWeightsError
        The file would execute code when unpickled.
    WeightsDownloadError
        ``"hf"`` while offline and not cached, or the download failed (the message says how to
        pass a local file); a ``RuntimeError``.
    """
    from xterrafm.hub import describe_source

    cfg = get_config(name)
    sd: dict[str, Tensor] | None = None
    source = "random-init"
    if isinstance(weights, Mapping):
        sd = canonical_state_dict(weights)
        source = "state_dict"
    elif isinstance(weights, str) and weights.strip().lower() in {"hf", "huggingface"}:
        path = download_published_weights(cfg.name, cache_dir=cache_dir)
        sd = read_weights(path)
        source = describe_source(path)
    elif weights is not None:
        sd = read_weights(weights)
        source = describe_source(Path(weights).expanduser())

    if sd is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TerraFM(cfg)
        digest = state_dict_sha256(model.state_dict())
        source = f"random-init(seed={seed})"
    else:
        model = _model_for_weights(cfg, sd, seed, copy=isinstance(weights, Mapping))
        digest = sha256 or state_dict_sha256(sd)
    model.weights_sha256 = digest
    model.weights_source = source
    model.precision = precision
    if device is not None:
        model = model.to(device)
    return model.eval()
