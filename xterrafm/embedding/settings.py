"""The embedding settings, declared once: :class:`EmbedSettings`.

Every way of asking for embeddings takes these settings from here: :func:`xterrafm.embed` and
:func:`xterrafm.embed_to_zarr` (their keyword arguments and the "Parameters" section of their
docstrings are generated from the fields), the ``.terrafm`` accessor (whose methods are those
functions) and ``python -m xterrafm embed`` (whose options are built from the fields by
:func:`add_settings_arguments`). Values are checked when the object is made, so a bad value is
refused with a message naming the argument before any data is read or any store is written.

This module imports only the standard library and xterrafm's torch-free tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xterrafm.bands import MODALITIES, check_modality
from xterrafm.cli_options import fraction, non_negative_int, positive_int
from xterrafm.embedding.calibration_spec import parse_bands, parse_calibration
from xterrafm.embedding.layout import LEVELS, layout_problem
from xterrafm.embedding.pairing import DEFAULT_PAIR_TOLERANCE, parse_tolerance
from xterrafm.errors import UsageError
from xterrafm.models.config import CONFIGS, get_config
from xterrafm.models.precision import PRECISIONS, canonical_precision

__all__ = [
    "DEVICE_PATTERN",
    "LEVELS",
    "EmbedSettings",
    "add_settings_arguments",
    "settings_docstring",
    "settings_from_namespace",
    "settings_parameters",
]

#: Devices a model can be put on.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def _option(default: Any, doc: str, *, type_doc: str, flag: str | None = "",
            group: str = "model", choices: tuple | None = None, metavar: str | None = None,
            cli_type: Callable[[str], Any] | None = None) -> Any:
    """A settings field with its documentation and (unless ``flag`` is None) its CLI option."""
    meta = {"doc": doc, "type_doc": type_doc, "flag": flag, "group": group, "choices": choices,
            "metavar": metavar, "cli_type": cli_type}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def _int_value(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise UsageError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}; got {value}")
    return value


def _none_or(text: str, parse: Callable[[str], Any]) -> Any:
    return None if text.strip().lower() in ("none", "") else parse(text)


@dataclass(frozen=True)
class EmbedSettings:
    """How to embed a cube: model, weights, windows, device and precision.

    Every field is a keyword argument of :func:`xterrafm.embed`; see the field docs there
    (``help(xterrafm.embed)``) or in ``python -m xterrafm embed --help``.
    """

    model: str = _option(
        "terrafm-b", "Model variant: " + ", ".join(sorted(CONFIGS)) + ".", type_doc="str")
    weights: str | None = _option(
        None, "Weights every worker can read: a ``.safetensors``/``.pth`` file, ``\"hf\"`` "
        "(the published checkpoint from the Hugging Face hub), or None for the seeded random "
        "initialisation (the same weights in every process; for smoke tests only).",
        type_doc="path, \"hf\" or None", metavar="FILE|hf")
    modality: str | None = _option(
        None, "Input modality (``s1``, ``s2_l1c``, ``s2_l2a``); default: what the cube's attrs "
        "record.", type_doc="str, optional", group="input selection",
        choices=tuple(sorted(MODALITIES)))
    calibration: Any = _option(
        "auto", "How the input's values become physical units. ``\"auto\"``: from what the "
        "input carries (``items``, CF ``scale_factor``/``add_offset``/``_FillValue``, "
        "``nodata`` attrs, a ``units`` attr of dB); integer or boolean values without such "
        "metadata, and values far outside the modality's physical range (checked on a small "
        "sample: at most 4 chunks of the first date are read), are refused. ``\"none\"``: "
        "physical units already (nothing applied or sampled). ``\"s2-dn\"``: Sentinel-2 "
        "DN / 10000; ``\"s2-dn-offset\"``: (DN - 1000) / 10000 (processing baseline >= "
        "04.00); ``\"db\"``: Sentinel-1 decibels to linear power; or a mapping ``{scale, "
        "offset, nodata, db}`` (see docs/inputs.md).",
        type_doc="str or mapping", group="input selection", metavar="NAME|scale=..,offset=..")
    bands: Any = _option(
        None, "Names of the input's bands in its own order (e.g. ``[\"B02\", \"B03\", "
        "...]`` for a raster whose bands are numbered 1..N), or a mapping ``{input label: "
        "band}``; names may be aliases (``blue``, ``nir``). Default: the band coordinate, the "
        "Dataset's variable names, or the GeoTIFF band descriptions (``long_name``).",
        type_doc="list of str or mapping, optional", group="input selection",
        metavar="B1,B2,...")
    items: Any = _option(
        None, "STAC items the input was loaded from (e.g. with ``odc.stac.load``): a list, an "
        "ItemCollection or the path of an ItemCollection JSON. With ``calibration=\"auto\"`` "
        "their ``raster:bands`` scale/offset/nodata (or the Sentinel-2 processing baseline) "
        "calibrate the input exactly as :func:`xterrafm.io.load_stac` does, and Sentinel-1 "
        "items that are not RTC are refused.",
        type_doc="list of pystac.Item, ItemCollection or path, optional", flag=None)
    level: str = _option(
        "tile", "``\"tile\"``: one CLS embedding per window of ``tile`` px every ``stride`` px; "
        "``\"patch\"``: the patch tokens, one per patch (16 x 16 px for the published models), on "
        "the input grid zoomed out by the patch size.",
        type_doc="{\"tile\", \"patch\"}", choices=LEVELS)
    tile: int = _option(224, "Window side in pixels (a multiple of the model's patch size: 16 "
                        "for the published models).", type_doc="int",
                        metavar="PX", cli_type=positive_int)
    stride: int | None = _option(
        None, "Window step in pixels, at most ``tile`` (default: ``tile``, windows side by "
        "side).", type_doc="int, optional", metavar="PX", cli_type=positive_int)
    batch_size: int | None = _option(
        None, "Windows per forward pass (default: 8 on CPU, 64 on CUDA).",
        type_doc="int, optional", cli_type=positive_int)
    device: str = _option(
        "auto", "Torch device: ``\"auto\"`` (CUDA where a worker has it), ``\"cpu\"``, "
        "``\"cuda\"``, ``\"cuda:1\"``.", type_doc="str")
    precision: str = _option(
        "auto", "Inference precision: ``\"auto\"`` (bf16 on CUDA and on CPUs where bf16 is "
        "faster than fp32 — AMX-BF16, or AVX512-BF16 on AMD — fp32 elsewhere; resolved on the "
        "workers, one precision per "
        "job, recorded in the output's attrs and the store fingerprint), ``\"fp32\"``, "
        "``\"bf16\"``, ``\"fp16\"``.", type_doc="str", choices=PRECISIONS)
    normalize: str | None = _option(
        "terrafm-v1", "Normalisation applied to the physical units (the statistics the model was "
        "trained with); None when the cube is normalised already.", type_doc="str or None",
        metavar="SPEC|none", cli_type=lambda text: _none_or(text, str))
    min_valid: float = _option(
        0.5, "Windows (tile level) or patches (patch level) whose fraction of valid pixels is "
        "below this are NaN.", type_doc="float in [0, 1]", cli_type=fraction)
    seed: int = _option(0, "Seed of the random initialisation (``weights=None``).",
                        type_doc="int", cli_type=non_negative_int)
    block_cells: tuple[int, int] | None = _option(
        None, "Output cells per dask block along (y, x); default: about one input chunk.",
        type_doc="int or (int, int), optional", flag=None)
    torch_threads: int | None = _option(
        None, "Torch threads per worker process (default: its share of the cores).",
        type_doc="int, optional", cli_type=positive_int)
    resources: Any = _option(
        "auto", "Resources the model tasks ask the scheduler for; ``\"auto\"``: ``{\"GPU\": 1}`` "
        "when workers of the distributed client declare a ``GPU`` resource; None: none.",
        type_doc="\"auto\", dict or None", flag=None)
    # -- fused inputs ({"s1": cube, "s2_l2a": cube}, see xterrafm.embedding.fused_api) --------
    pair_tolerance: str = _option(
        DEFAULT_PAIR_TOLERANCE, "Fused inputs only: each date of the optical cube is paired with "
        "the other cube's acquisition nearest in time within this duration (``\"6D\"``, "
        "``\"36h\"``); dates without one are embedded from the optical cube alone.",
        type_doc="str", group="input selection", metavar="DURATION")

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: values are normalised once, here
        try:
            put(self, "model", get_config(self.model).name)
        except (KeyError, ValueError) as err:
            raise UsageError(f"model: {err}") from None
        if isinstance(self.weights, Mapping):
            raise UsageError("weights must be a file every worker can read (or 'hf'), not an "
                             "in-memory state_dict; write it with xterrafm.convert_weights")
        if self.weights is not None:
            text = str(self.weights)
            put(self, "weights", "hf" if text.strip().lower() in ("hf", "huggingface") else text)
        if self.modality is not None:
            try:
                put(self, "modality", check_modality(self.modality))
            except ValueError as err:
                raise UsageError(f"modality: {err}") from None
        put(self, "calibration", parse_calibration(self.calibration))
        put(self, "bands", parse_bands(self.bands))
        if self.items is not None:
            if isinstance(self.items, (str, bytes)) or hasattr(self.items, "__fspath__"):
                put(self, "items", str(self.items))
            elif isinstance(self.items, Mapping) or not hasattr(self.items, "__iter__"):
                raise UsageError("items must be a list of STAC items, an ItemCollection or the "
                                 f"path of an ItemCollection JSON; got {type(self.items).__name__}")
            else:
                put(self, "items", tuple(self.items))
                if not self.items:
                    raise UsageError("items is empty")
        tile = _int_value("tile", self.tile)
        stride = None if self.stride is None else _int_value("stride", self.stride)
        model = get_config(self.model)
        problem = layout_problem(tile, stride, model.patch_size, self.level, model=model.name)
        if problem:
            raise UsageError(problem)
        put(self, "tile", tile)
        if stride is not None:
            put(self, "stride", stride)
        if self.batch_size is not None:
            put(self, "batch_size", _int_value("batch_size", self.batch_size))
        device = str(self.device).strip().lower()
        if not DEVICE_PATTERN.match(device):
            raise UsageError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; "
                             f"got {self.device!r}")
        put(self, "device", device)
        try:
            put(self, "precision", canonical_precision(self.precision))
        except ValueError as err:
            raise UsageError(f"precision: {err}") from None
        if isinstance(self.min_valid, bool) or not isinstance(self.min_valid, numbers.Real) \
                or not 0.0 <= float(self.min_valid) <= 1.0:
            raise UsageError(f"min_valid must be a number between 0 and 1; got {self.min_valid!r}")
        put(self, "min_valid", float(self.min_valid))
        put(self, "seed", _int_value("seed", self.seed, minimum=0))
        if self.block_cells is not None:
            cells = self.block_cells
            pair = (cells, cells) if not isinstance(cells, (tuple, list)) else tuple(cells)
            if len(pair) != 2:
                raise UsageError(f"block_cells must be an int or a (y, x) pair; got {cells!r}")
            put(self, "block_cells", tuple(_int_value("block_cells", c) for c in pair))
        if self.torch_threads is not None:
            put(self, "torch_threads", _int_value("torch_threads", self.torch_threads))
        if not (self.resources is None or self.resources == "auto"
                or isinstance(self.resources, Mapping)):
            raise UsageError(f"resources must be 'auto', None or a dict; got {self.resources!r}")
        try:
            parse_tolerance(self.pair_tolerance)
        except ValueError as err:
            raise UsageError(f"pair_tolerance: {err}") from None

    @property
    def step(self) -> int:
        """The window step in pixels (``stride``, or ``tile`` when no stride was given)."""
        return self.tile if self.stride is None else self.stride

    def replace(self, **changes: Any) -> EmbedSettings:
        """A copy with some fields changed (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_options(cls, settings: EmbedSettings | None = None, **options: Any) -> EmbedSettings:
        """``settings`` with ``options`` applied (unknown names raise ``TypeError``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown embedding setting(s) {unknown}; known: {sorted(names)}")
        if settings is None:
            return cls(**options)
        return settings.replace(**options) if options else settings


# -- documentation and signatures generated from the fields ------------------------------------
def settings_docstring(indent: str = "    ") -> str:
    """The numpydoc "Parameters" entries of every setting, indented by ``indent``."""
    lines = []
    for f in dataclasses.fields(EmbedSettings):
        lines.append(f"{indent}{f.name} : {f.metadata['type_doc']}")
        lines.append(f"{indent}    {f.metadata['doc']}")
    return "\n".join(lines)


def settings_parameters() -> list[inspect.Parameter]:
    """Keyword-only :class:`inspect.Parameter` objects of the settings (for signatures)."""
    return [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                              annotation=f.type) for f in dataclasses.fields(EmbedSettings)]


# -- command line ------------------------------------------------------------------------------
def _flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_settings_arguments(parser: argparse.ArgumentParser,
                           groups: Mapping[str, Any] | None = None) -> None:
    """Add one option per setting (those with a flag) to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    groups : mapping, optional
        Argument groups by name (``"model"``, ``"input selection"``); missing ones are made.
    """
    made = dict(groups or {})
    for f in dataclasses.fields(EmbedSettings):
        if f.metadata["flag"] is None:
            continue
        name = f.metadata["group"]
        if name not in made:
            made[name] = parser.add_argument_group(name)
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": _plain(f.metadata["doc"])}
        if f.metadata["choices"]:
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata["metavar"]:
            kwargs["metavar"] = f.metadata["metavar"]
        if f.metadata["cli_type"]:
            kwargs["type"] = f.metadata["cli_type"]
        if f.default is not None and f.default is not dataclasses.MISSING:
            kwargs["help"] += f" (default: {f.default})"
        made[name].add_argument(_flag(f), **kwargs)


def _plain(doc: str) -> str:
    return doc.replace("``", "").replace("%", "%%")


def settings_from_namespace(args: argparse.Namespace) -> EmbedSettings:
    """The :class:`EmbedSettings` of parsed command-line options (unset ones keep defaults).

    Options not given on the command line are absent from ``args`` (their argparse default is
    ``SUPPRESS``) and keep the field defaults.

    Raises
    ------
    UsageError
        A value is out of range (the message names the setting).
    """
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(EmbedSettings)
             if f.metadata["flag"] is not None and hasattr(args, f.name)}
    return EmbedSettings(**given)
