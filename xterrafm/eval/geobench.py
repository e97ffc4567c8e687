"""GEO-Bench classification tasks as published (e.g. ``classification_v1.0/m-eurosat``), read safely.

Layout of a task folder, as the GEO-Bench download unpacks it::

    <task dir>/
        default_partition.json   {"train": [names], "valid": [...], "test": [...]}
        <name>.hdf5              one file per sample: one dataset per band, named like
                                 "02 - Blue" or "08A - Vegetation Red Edge"; the file's
                                 attribute "pickle" holds repr(pickle.dumps(metadata)),
                                 whose "label" entry is the class (or a multi-hot vector)
        labels.json              optional: {"<name>": label}, used instead of the attribute

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
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import get_modality
from xterrafm.errors import InputError

with import_gate():
    import numpy as np

__all__ = [
    "band_prefix",
    "load_split",
    "read_label",
    "read_sample",
]


def band_prefix(band: str) -> str:
    """GEO-Bench's dataset-name prefix of a TerraFM Sentinel-2 band: B8A -> "08A", B02 -> "02"."""
    return band[1:].zfill(2) if band != "B8A" else "08A"


def read_sample(path: str | os.PathLike, modality: str = "s2_l1c", scale: float = 1e-4,
                offset: float = 0.0) -> np.ndarray:
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
        by_prefix = {name.split(" - ")[0].strip(): name for name in f.keys()}
        bands = []
        for band in get_modality(modality).band_names:
            key = by_prefix.get(band_prefix(band))
            if key is None:
                raise InputError(f"{path}: no dataset for band {band} (have {sorted(f.keys())})")
            bands.append(np.asarray(f[key], dtype=np.float32))
    return np.stack(bands) * np.float32(scale) + np.float32(offset)


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
