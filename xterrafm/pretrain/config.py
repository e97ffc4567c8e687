"""Pretraining configuration: a flat dataclass read from TOML files and ``--key=value``.

Shipped configs live in ``xterrafm/pretrain/configs/<name>.toml``. TOML sections
(``[model]``, ``[data]``, ...) only group keys for reading; every key is unique, so an override
is ``--batch_size=8`` (or ``--data.batch_size=8``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.data.subsets import MODALITY_SUBSET_RULES
from xterrafm.errors import UsageError
from xterrafm.models.config import CONFIGS, get_config

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    with import_gate():
        import tomli as tomllib

__all__ = ["PretrainConfig", "apply_overrides", "check_config_values", "load_config",
           "shipped_configs"]


@dataclass
class PretrainConfig:
    """Every setting of a pretraining run (see docs/pretraining.md for the meaning of each)."""

    # model / head
    model: str = "terrafm-tiny"
    out_dim: int = 65536
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3
    norm_last_layer: bool = True
    drop_path_rate: float = 0.0
    # data
    tile_size: int = 448
    global_crop_size: int = 224
    local_crop_size: int = 96
    n_local_crops: int = 6
    global_crop_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    local_crop_scale: list[float] = field(default_factory=lambda: [0.05, 0.4])
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    modality_subsets: str = "uniform"
    min_valid_fraction: float = 0.5
    # radiometric jitter of the views (normalised units; 0 = off, see xterrafm.data.views)
    brightness: float = 0.0
    contrast: float = 0.0
    band_jitter: float = 0.0
    noise: float = 0.0
    radiometric_p: float = 0.8
    grayscale_p: float = 0.0
    sampling: str = "weighted"
    alpha: float = 0.5
    shuffle_window: int = 4
    num_workers: int = 2
    batch_size: int = 64
    normalization: str = "terrafm-v1"
    seed: int = 0
    # synthetic scene used without --data
    synthetic_size: int = 448
    synthetic_dates: int = 2
    synthetic_chunk: int = 224
    # DINO
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 30
    momentum_teacher: float = 0.996
    center_momentum: float = 0.9
    center_lambda: float = 0.5
    center_alpha: float = 1.0
    centering: str = "ema"
    koleo_weight: float = 0.0
    ibot_weight: float = 0.0
    mask_probability: float = 0.5
    mask_ratio: list[float] = field(default_factory=lambda: [0.1, 0.5])
    # optimisation
    base_lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    freeze_last_layer_steps: int = -1
    total_steps: int = 100
    max_steps: int = 100
    # run
    checkpoint_every: int = 50
    log_every: int = 1
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        positive = ("out_dim", "tile_size", "global_crop_size", "local_crop_size", "batch_size",
                    "total_steps", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.global_crop_size > self.tile_size:
            raise ValueError("global_crop_size must not exceed tile_size")
        if self.sampling not in ("weighted", "uniform"):
            raise ValueError(f"sampling must be 'weighted' or 'uniform', got {self.sampling!r}")
        if not 0.0 <= self.center_lambda <= 1.0:
            raise ValueError(f"center_lambda must be in [0, 1], got {self.center_lambda}")
        if self.centering not in ("ema", "sinkhorn"):
            raise ValueError(f"centering must be 'ema' or 'sinkhorn', got {self.centering!r}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?",
                                                                 self.device):
            raise UsageError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got "
                             f"{self.device!r}")
        if self.amp not in ("auto", "bf16", "fp32"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'fp32', got {self.amp!r}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.koleo_weight < 0:
            raise ValueError(f"koleo_weight must be >= 0, got {self.koleo_weight}")
        if self.max_steps < 0:
            raise ValueError("max_steps must be >= 0")
        if self.num_workers < 0:
            raise ValueError("num_workers must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON-serialisable)."""
        return dataclasses.asdict(self)


def shipped_configs() -> list[str]:
    """Names of the configs shipped in the package (``tiny``, ``vitb``)."""
    folder = resources.files("xterrafm.pretrain") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _flatten(table: dict[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            for k, v in _flatten(value, f"{where}[{key}]").items():
                if k in flat:
                    raise ValueError(f"key {k!r} appears twice in {where}")
                flat[k] = v
        else:
            flat[key] = value
    return flat


def _coerce(name: str, value: Any, kind: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return bool(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        if kind.startswith("list"):
            if isinstance(value, str):
                value = [float(v) for v in value.strip("[]").split(",") if v.strip()]
            return [float(v) for v in value]
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"config key {name!r}: cannot read {value!r} as {kind}") from None


def apply_overrides(config: PretrainConfig, overrides: dict[str, Any]) -> PretrainConfig:
    """A copy of ``config`` with ``overrides`` (keys may carry a ``section.`` prefix).

    Unknown keys raise ``ValueError`` listing the valid ones.
    """
    types = {f.name: f.type for f in dataclasses.fields(PretrainConfig)}
    values = config.to_dict()
    for raw_key, value in overrides.items():
        key = raw_key.rsplit(".", 1)[-1].replace("-", "_")
        if key not in types:
            raise ValueError(f"unknown config key {raw_key!r}; valid keys: {sorted(types)}")
        values[key] = _coerce(key, value, types[key])
    config = PretrainConfig(**values)
    check_config_values(config)
    return config


def load_config(name_or_path: str | os.PathLike, overrides: dict[str, Any] | None = None
                ) -> PretrainConfig:
    """Load a shipped config by name (``"tiny"``, ``"vitb"``) or a TOML file by path.

    Parameters
    ----------
    name_or_path : str or path
    overrides : dict, optional
        ``{key: value}`` applied after the file (strings are converted to the field type).
    """
    text: str
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text, where = path.read_text(), str(path)
    else:
        name = str(name_or_path)
        if name not in shipped_configs():
            raise ValueError(
                f"unknown config {name!r}: not a file and not a shipped config "
                f"({', '.join(shipped_configs())})"
            )
        text = (resources.files("xterrafm.pretrain") / "configs" / f"{name}.toml").read_text()
        where = f"config {name!r}"
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{where} is not valid TOML: {err}") from None
    config = apply_overrides(PretrainConfig(), _flatten(table, where))
    return apply_overrides(config, overrides or {})


# -- value checks, made when a config is loaded or overridden -----------------------------------
def _fail(key: str, value: Any, need: str) -> None:
    raise UsageError(f"config key {key!r} = {value!r}: {need}")


def check_config_values(config: PretrainConfig) -> None:
    """Refuse settings that cannot train, before any data is read or any step runs.

    :func:`load_config` and :func:`apply_overrides` call this, so ``python -m
    xterrafm.pretrain --key=value`` refuses a bad value with exit code 2 and a message naming the
    key, the value and what it must be.

    Raises
    ------
    UsageError
        The first value out of range.
    """
    c = config
    for key in ("base_lr", "student_temp", "teacher_temp", "warmup_teacher_temp"):
        if not getattr(c, key) > 0:
            _fail(key, getattr(c, key), "must be > 0")
    for key in ("min_lr", "weight_decay", "weight_decay_end", "clip_grad", "warmup_steps",
                "warmup_teacher_temp_steps", "n_local_crops", "brightness", "contrast",
                "band_jitter", "noise", "alpha", "center_alpha"):
        if getattr(c, key) < 0:
            _fail(key, getattr(c, key), "must be >= 0")
    if c.min_lr > c.base_lr:
        _fail("min_lr", c.min_lr, f"must not exceed base_lr ({c.base_lr})")
    if not 0.0 <= c.momentum_teacher <= 1.0:
        _fail("momentum_teacher", c.momentum_teacher, "must be in [0, 1]")
    if not 0.0 <= c.center_momentum < 1.0:
        _fail("center_momentum", c.center_momentum,
              "must be in [0, 1) (the weight the running centre keeps per step)")
    for key in ("min_valid_fraction", "radiometric_p"):
        if not 0.0 <= getattr(c, key) <= 1.0:
            _fail(key, getattr(c, key), "must be in [0, 1]")
    try:
        patch = get_config(c.model).patch_size
    except ValueError:
        _fail("model", c.model, f"must be one of {sorted(CONFIGS)}")
    for key in ("global_crop_size", "local_crop_size"):
        if getattr(c, key) % patch:
            _fail(key, getattr(c, key), f"must be a multiple of the model's {patch} px patch size")
    if c.local_crop_size > c.tile_size:
        _fail("local_crop_size", c.local_crop_size, f"must not exceed tile_size ({c.tile_size})")
    for key in ("global_crop_scale", "local_crop_scale"):
        scale = getattr(c, key)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            _fail(key, scale, "must be [low, high] with 0 < low <= high <= 1")
    if len(c.crop_ratio) != 2 or not 0.0 < c.crop_ratio[0] <= c.crop_ratio[1]:
        _fail("crop_ratio", c.crop_ratio, "must be [low, high] with 0 < low <= high")
    if c.modality_subsets not in MODALITY_SUBSET_RULES:
        _fail("modality_subsets", c.modality_subsets,
              f"must be one of {list(MODALITY_SUBSET_RULES)}")
    if c.ibot_weight < 0:
        _fail("ibot_weight", c.ibot_weight, "must be >= 0 (0 = no masked-token objective)")
    if not 0.0 <= c.mask_probability <= 1.0:
        _fail("mask_probability", c.mask_probability, "must be in [0, 1]")
    if len(c.mask_ratio) != 2 or not 0.0 < c.mask_ratio[0] <= c.mask_ratio[1] < 1.0:
        _fail("mask_ratio", c.mask_ratio, "must be [low, high] with 0 < low <= high < 1")
    if c.max_steps < 1:
        _fail("max_steps", c.max_steps, "must be >= 1 (0 or fewer steps train nothing)")
    for key in ("synthetic_size", "synthetic_dates", "synthetic_chunk", "head_hidden_dim",
                "head_bottleneck_dim", "head_layers"):
        if getattr(c, key) < 1:
            _fail(key, getattr(c, key), "must be >= 1")
