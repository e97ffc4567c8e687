"""GEO-Bench classification tasks as published (e.g. ``classification_v1.0/m-eurosat``), read safely.

Layout of a task folder, as the GEO-Bench download unpacks it::

    <task dir>/
        default_partition.json   {"train": [names], "valid": [...], "test": [...]}
        <name>.hdf5              one file per sample: one dataset per band, named like
                                 "02 - Blue" or "08A - Vegetation Red Edge"; the file's
                                 attribute "pickle" holds repr(pickle.dumps(metadata)),
                                 whose "label" entry is the class (or a multi-hot vector)
        labels.json              optional: {"<name>": label}, used instead of the attribute

The TerraFM paper's kNN tasks are the four Sentinel-2 classification tasks, described in
:data:`TASKS`: which stem (L1C or L2A) each needs, how its stored values become reflectance,
which band each stored channel really holds (``m-eurosat`` and ``m-brick-kiln`` were published
with wrong band names, ServiceNow/geo-bench issues 28 and 29), and which TerraFM bands it lacks
(``m-so2sat``: B01, B09; ``m-brick-kiln``: B06, B09). Missing bands are filled by a documented
policy (:data:`MISSING_POLICIES`, default ``"interpolate"``) so that every task runs.
The 1 % setting is GEO-Bench's own partition file ``0.01x_train_partition.json``
(:func:`partition_name`).

Labels are read from the pickled attribute *without unpickling it*: the reader resolves no
global name at all, so every class, function or module the pickle mentions (GEO-Bench's band
classes, numpy's reconstructors, or anything hostile) becomes an inert placeholder and no code
from the file runs. Plain values (ints, lists) come out as they are; numpy scalars and
arrays of plain numeric dtypes are decoded from their raw bytes. A label that is something
else is refused with a message pointing at ``labels.json``.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import get_modality
from xterrafm.errors import InputError

with import_gate():
    import numpy as np

__all__ = [
    "GEOBENCH_S2_NAMES",
    "MISSING_POLICIES",
    "TASKS",
    "GeoBenchTask",
    "band_prefix",
    "fill_missing_bands",
    "load_split",
    "partition_name",
    "read_label",
    "read_sample",
    "task_for",
]

#: GEO-Bench's dataset names of the 13 Sentinel-2 bands, in the order its metadata lists them.
GEOBENCH_S2_NAMES = ("01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red",
                     "05 - Vegetation Red Edge", "06 - Vegetation Red Edge",
                     "07 - Vegetation Red Edge", "08 - NIR", "08A - Vegetation Red Edge",
                     "09 - Water vapour", "10 - SWIR - Cirrus", "11 - SWIR", "12 - SWIR")

#: How bands a task lacks are filled: ``"interpolate"`` linearly in wavelength between the
#: nearest present bands on either side (the nearest one beyond the ends: B01 <- B02,
#: B09 <- B8A and B11), ``"mean"`` with the normalisation's mean (0 after normalisation),
#: ``"error"`` refuses.
MISSING_POLICIES = ("interpolate", "mean", "error")


@dataclass(frozen=True)
class GeoBenchTask:
    """One GEO-Bench classification task as xterrafm reads it.

    Attributes
    ----------
    name : str
        Folder name (``m-eurosat``).
    modality : str
        TerraFM stem: ``"s2_l1c"`` or ``"s2_l2a"`` (the product the task's images come from).
    scale : float
        Stored value -> reflectance (``1e-4`` for digital numbers, 1 when stored as reflectance).
    channels : tuple of str or None
        The band each stored channel really holds, in the order of :data:`GEOBENCH_S2_NAMES`
        (the channel stored under the i-th name holds ``channels[i]``; None: the names are
        right). Entries that are not TerraFM bands (B10, true-colour composites) are ignored.
    missing : tuple of str
        TerraFM bands the task does not have.
    multilabel : bool
        Scored with micro-F1 of one binary kNN per class.
    source : str
        Where these facts come from.
    """

    name: str
    modality: str
    scale: float
    channels: tuple[str, ...] | None = None
    missing: tuple[str, ...] = ()
    multilabel: bool = False
    source: str = ""


#: The TerraFM paper's GEO-Bench kNN tasks.
TASKS: dict[str, GeoBenchTask] = {t.name: t for t in (
    GeoBenchTask("m-eurosat", "s2_l1c", 1e-4,
                 channels=("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09",
                           "B10", "B11", "B12", "B8A"),
                 source="EuroSAT MS: Level-1C digital numbers; B8A stored last but named 08A "
                        "(ServiceNow/geo-bench issue 28, README 'Known issues')"),
    GeoBenchTask("m-bigearthnet", "s2_l2a", 1e-4, multilabel=True,
                 source="BigEarthNet v1: Sentinel-2 Level-2A (Sen2Cor) digital numbers, "
                        "12 bands without B10"),
    GeoBenchTask("m-so2sat", "s2_l1c", 1.0, missing=("B01", "B09"),
                 source="So2Sat LCZ42: 10 Level-1C bands stored as reflectance (no B01, B09, "
                        "B10), beside 8 Sentinel-1 channels that are not read"),
    GeoBenchTask("m-brick-kiln", "s2_l1c", 1e-4,
                 channels=("B01", "B02", "B03", "B04", "B05", "B07", "B8A", "B08", "B11",
                           "B12", "TCI_R", "TCI_G", "TCI_B"),
                 missing=("B06", "B09"),
                 source="kiln-scaling export of Level-1C digital numbers: B01 B02 B03 B04 B05 "
                        "B07 B8A B08 B11 B12 + 8-bit true colour, under the 13 standard names "
                        "(ServiceNow/geo-bench issue 29, README 'Known issues')"),
)}


def task_for(task_dir: str | os.PathLike) -> GeoBenchTask | None:
    """The :data:`TASKS` entry of a task folder (by its name), or None for another task."""
    return TASKS.get(Path(task_dir).name)


def partition_name(train_fraction: float) -> str:
    """GEO-Bench's partition of a training fraction: 0.01 -> ``"0.01x_train"``, 1 -> default."""
    if train_fraction == 1.0:
        return "default"
    return f"{train_fraction:.2f}x_train"


def band_prefix(band: str) -> str:
    """GEO-Bench's dataset-name prefix of a TerraFM Sentinel-2 band: B8A -> "08A", B02 -> "02"."""
    return band[1:].zfill(2) if band != "B8A" else "08A"


def _datasets_by_band(names: Sequence[str], channels: Sequence[str] | None) -> dict[str, str]:
    """``{band: HDF5 dataset name}`` of a sample's Sentinel-2 datasets.

    Datasets are matched by GEO-Bench's full Sentinel-2 names (so ``"02 - VH.Imaginary"``, a
    Sentinel-1 channel of m-so2sat, is never taken for ``"02 - Blue"``); with ``channels`` the
    dataset stored under the i-th standard name holds ``channels[i]``.
    """
    present = set(names)
    out: dict[str, str] = {}
    for i, std in enumerate(GEOBENCH_S2_NAMES):
        if std not in present:
            continue
        if channels is not None:
            out[channels[i]] = std
        else:
            prefix = std.split(" - ")[0]
            band = "B8A" if prefix == "08A" else f"B{prefix}"
            out[band] = std
    return out


def _wavelength(band: str) -> float:
    from xterrafm.bands import S2_L2A

    return float(S2_L2A.band(band).wavelength_um)


def fill_missing_bands(bands: dict[str, np.ndarray], modality: str, policy: str = "interpolate",
                       spec: str = "terrafm-v1") -> tuple[np.ndarray, list[str]]:
    """Stack a sample's bands in TerraFM order, filling the ones it lacks.

    Parameters
    ----------
    bands : dict
        ``{band: (H, W) array}`` in physical units (reflectance).
    modality : str
    policy : {"interpolate", "mean", "error"}
        See :data:`MISSING_POLICIES`.
    spec : str
        Normalisation spec whose means ``"mean"`` uses.

    Returns
    -------
    image : ndarray float32, shape (12, H, W)
    filled : list of str
        The bands that were filled.

    Raises
    ------
    InputError
        A band is missing and ``policy="error"``; an unknown policy; no band present.
    """
    if policy not in MISSING_POLICIES:
        raise InputError(f"unknown missing-band policy {policy!r}; expected one of "
                         f"{list(MISSING_POLICIES)}")
    order = get_modality(modality).band_names
    have = [b for b in order if b in bands]
    lacking = [b for b in order if b not in bands]
    if not have:
        raise InputError(f"no band of {modality} is present (have {sorted(bands)})")
    if lacking and policy == "error":
        raise InputError(f"bands {lacking} are missing (policy 'error'); pass another "
                         f"missing-band policy ({list(MISSING_POLICIES)})")
    out = {b: np.asarray(bands[b], np.float32) for b in have}
    if lacking and policy == "mean":
        from xterrafm.normalization import load_spec

        entry = load_spec(spec)["modalities"][modality]
        means = dict(zip(entry["bands"], entry["mean"], strict=True))
        shape = out[have[0]].shape
        for b in lacking:
            out[b] = np.full(shape, np.float32(means[b]), np.float32)
    elif lacking:
        waves = {b: _wavelength(b) for b in have}
        for b in lacking:
            w = _wavelength(b)
            below = [h for h in have if waves[h] < w]
            above = [h for h in have if waves[h] > w]
            lo = max(below, key=lambda h: waves[h]) if below else None
            hi = min(above, key=lambda h: waves[h]) if above else None
            if lo is None or hi is None:
                out[b] = out[hi or lo].copy()
            else:
                t = (w - waves[lo]) / (waves[hi] - waves[lo])
                out[b] = ((1 - t) * out[lo] + t * out[hi]).astype(np.float32)
    return np.stack([out[b] for b in order]), lacking


def read_sample(path: str | os.PathLike, modality: str = "s2_l1c", scale: float = 1e-4,
                offset: float = 0.0, *, channels: Sequence[str] | None = None,
                missing: str = "error", spec: str = "terrafm-v1") -> np.ndarray:
    """Bands of one GEO-Bench HDF5 sample in TerraFM order, in physical units.

    Parameters
    ----------
    path : path-like
        ``<name>.hdf5``.
    modality : str
        ``"s2_l1c"`` or ``"s2_l2a"`` (GEO-Bench classification tasks hold Sentinel-2 bands;
        B10 is dropped).
    scale, offset : float
        ``reflectance = value * scale + offset`` (default: digital numbers / 10000).
    channels : sequence of str, optional
        The band each stored channel really holds (:attr:`GeoBenchTask.channels`); default:
        the dataset names are right.
    missing : {"error", "interpolate", "mean"}
        What to do with bands the sample lacks (:func:`fill_missing_bands`).
    spec : str
        Normalisation spec (for ``missing="mean"``).

    Returns
    -------
    numpy.ndarray of float32, shape (12, H, W)
    """
    with import_gate():
        import h5py

    if not modality.startswith("s2"):
        raise InputError("GEO-Bench classification tasks hold Sentinel-2 bands: use modality "
                         f"s2_l1c or s2_l2a, not {modality!r}")
    with h5py.File(path, "r") as f:
        names = list(f.keys())
        where = _datasets_by_band(names, channels)
        wanted = get_modality(modality).band_names
        bands = {b: np.asarray(f[where[b]], dtype=np.float32) * np.float32(scale)
                 + np.float32(offset) for b in wanted if b in where}
    if missing == "error":
        lacking = [b for b in wanted if b not in bands]
        if lacking:
            raise InputError(f"{path}: no dataset for band {lacking[0]} (have {sorted(names)}); "
                             "pass a missing-band policy (interpolate, mean) to fill it")
    image, _ = fill_missing_bands(bands, modality, missing, spec)
    return image


# -- labels from the pickled attribute, without unpickling -------------------------------------
class _Built:
    """An object a pickle would have built from a global: records its arguments and state.

    Subclasses stand for the pickle's globals (one class per global, made by
    :meth:`_NoGlobalsUnpickler.find_class`); instantiating them runs nothing but this code.
    """

    origin: tuple[str, str] = ("?", "?")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Built:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @property
    def name(self) -> str:
        return self.origin[1]

    @property
    def qualname(self) -> str:
        return ".".join(self.origin)


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Resolves no global: each one becomes an inert :class:`_Built` subclass."""

    def find_class(self, module: str, name: str) -> Any:
        return type("Inert", (_Built,), {"origin": (str(module), str(name))})

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported")


_NUMERIC_KINDS = "biuf"


def _dtype_of(obj: Any) -> np.dtype | None:
    """A plain numeric dtype from a pickled ``numpy.dtype(code, ...)``, else None."""
    if isinstance(obj, _Built) and obj.name == "dtype" and obj.args:
        code = obj.args[0]
        if isinstance(code, str) and len(code) <= 4:
            dt = np.dtype(code)
            if dt.kind in _NUMERIC_KINDS:
                order = obj.state[1] if isinstance(obj.state, tuple) and len(obj.state) > 1 \
                    else None
                if order in ("<", ">"):
                    dt = dt.newbyteorder(order)
                return dt
    return None


def _bytes_of(obj: Any) -> bytes | None:
    """Raw bytes: a bytes object, or protocol 0-2's ``_codecs.encode(text, "latin1")``."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if (isinstance(obj, _Built) and obj.origin == ("_codecs", "encode") and len(obj.args) == 2
            and isinstance(obj.args[0], str) and obj.args[1] == "latin1"):
        return obj.args[0].encode("latin-1")
    return None


def _decode(obj: Any) -> Any:
    """Plain Python value of a label: ints, bools, lists/tuples of them, numpy scalars/arrays."""
    if isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_decode(v) for v in obj]
    if isinstance(obj, _Built):
        if obj.name == "scalar" and len(obj.args) == 2:
            dt, raw = _dtype_of(obj.args[0]), _bytes_of(obj.args[1])
            if dt is not None and raw is not None and dt.itemsize == len(raw):
                return np.frombuffer(raw, dtype=dt)[0].item()
        if obj.name == "_reconstruct" and isinstance(obj.state, tuple) \
                and len(obj.state) == 5:
            _, shape, dtype, fortran, raw = obj.state
            dt, raw = _dtype_of(dtype), _bytes_of(raw)
            if dt is not None and raw is not None and isinstance(shape, tuple):
                arr = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")
                return arr.tolist()
        if obj.name == "_frombuffer" and len(obj.args) == 4:  # protocol 5 arrays
            raw, dtype, shape, order = obj.args
            dt, raw = _dtype_of(dtype), _bytes_of(raw)
            if dt is not None and raw is not None and isinstance(shape, tuple) \
                    and order in ("C", "F"):
                return np.frombuffer(raw, dtype=dt).reshape(shape, order=order).tolist()
        raise ValueError(f"a pickled {obj.qualname} object")
    raise ValueError(f"a {type(obj).__name__}")


def read_label(path: str | os.PathLike) -> Any:
    """The label of a GEO-Bench HDF5 sample, from its pickled attribute, without unpickling.

    Returns
    -------
    int or list of int
        Class index, or a multi-hot list for multi-label tasks.

    Raises
    ------
    InputError
        No ``pickle`` attribute, no ``label`` entry, or a label that is not plain data.
    """
    with import_gate():
        import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("pickle")
    if raw is None:
        raise InputError(f"{path}: no 'pickle' attribute holding the label; put the labels in "
                         "labels.json next to the samples")
    if isinstance(raw, bytes) and not raw.startswith((b"b'", b'b"')):
        data = raw
    else:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            data = ast.literal_eval(text)  # repr(bytes) -> bytes; evaluates literals only
        except (ValueError, SyntaxError) as err:
            raise InputError(f"{path}: the 'pickle' attribute is not a bytes literal") from err
    try:
        meta = _NoGlobalsUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # noqa: BLE001 - any malformed stream: same advice
        raise InputError(f"{path}: cannot parse the 'pickle' attribute ({err}); put the labels "
                         "in labels.json next to the samples") from err
    if not isinstance(meta, dict) or "label" not in meta:
        raise InputError(f"{path}: the metadata holds no 'label' (a segmentation task?); put "
                         "the labels in labels.json next to the samples")
    try:
        return _decode(meta["label"])
    except ValueError as err:
        raise InputError(f"{path}: the label is {err}, not plain data; put the labels in "
                         "labels.json next to the samples") from None


def load_split(task_dir: str | os.PathLike, split: str, partition: str = "default"
               ) -> tuple[list[str], list[Any]]:
    """Sample names and labels of one split of a GEO-Bench classification task.

    Labels come from ``labels.json`` when the folder has one, else from each sample's
    pickled attribute (:func:`read_label`).

    Parameters
    ----------
    task_dir : path-like
        Task folder (see the module docstring).
    split : str
        ``"train"``, ``"valid"`` or ``"test"``.
    partition : str
        Partition file ``<partition>_partition.json`` (``"default"``; GEO-Bench also ships
        e.g. ``"0.01x_train"``).
    """
    root = Path(task_dir)
    part_file = root / f"{partition}_partition.json"
    if not part_file.is_file():
        raise InputError(f"{part_file} not found: expected a GEO-Bench task folder holding "
                         f"{partition}_partition.json and one <name>.hdf5 per sample")
    try:
        parts = json.loads(part_file.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{part_file} is not valid JSON: {err}") from None
    if split not in parts:
        raise InputError(f"{part_file} has no split {split!r}; it has {sorted(parts)}")
    names = [str(n) for n in parts[split]]
    if not names:
        raise InputError(f"{part_file}: split {split!r} is empty")
    missing = [n for n in names if not (root / f"{n}.hdf5").is_file()]
    if missing:
        raise InputError(f"{root}: {len(missing)} samples of split {split!r} have no .hdf5 "
                         f"file, e.g. {missing[:3]}")
    labels_file = root / "labels.json"
    if labels_file.is_file():
        table = json.loads(labels_file.read_text())
        lacking = [n for n in names if n not in table]
        if lacking:
            raise InputError(f"{labels_file} lacks {len(lacking)} samples, e.g. {lacking[:3]}")
        return names, [table[n] for n in names]
    return names, [read_label(root / f"{n}.hdf5") for n in names]
