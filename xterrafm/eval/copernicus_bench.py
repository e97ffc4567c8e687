"""Copernicus-Bench EuroSAT-S1 (the EuroSAT-SAR images) as published, read as TerraFM S1 input.

Layout of ``eurosat_s1.zip`` of the ``wangyi111/Copernicus-Bench`` dataset, unpacked::

    eurosat_s1/
        eurosat-train.txt        one image name per line ("AnnualCrop_12.jpg"; the images
        eurosat-val.txt          are the .tif files of the same name); .csv lists without a
        eurosat-test.txt         header are read the same way
        all_imgs/<Class>/<Class>_<n>.tif   two bands, VV and VH, backscatter in dB, 64 x 64 px

The class of an image is the part of its name before the first ``_`` (10 classes). Values are
converted to linear power (``10 ** (dB / 10)``), the unit xterrafm's S1 normalisation expects.
"""

from __future__ import annotations

import os
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.errors import InputError

with import_gate():
    import numpy as np

__all__ = ["SPLITS", "find_root", "load_split", "read_chip"]

#: Split names as the list files spell them (``valid`` is accepted for ``val``).
SPLITS = ("train", "val", "test")
_LIST_NAMES = ("eurosat-{}.txt", "eurosat-{}.csv")


def find_root(path: str | os.PathLike) -> Path:
    """The ``eurosat_s1`` folder: ``path`` itself or its ``eurosat_s1`` sub-folder."""
    p = Path(path)
    for candidate in (p, p / "eurosat_s1"):
        if (candidate / "all_imgs").is_dir():
            return candidate
    raise InputError(f"{p} is not a Copernicus-Bench EuroSAT-S1 folder: expected "
                     "eurosat_s1/all_imgs/<Class>/*.tif and eurosat-{train,val,test}.txt")


def load_split(path: str | os.PathLike, split: str) -> tuple[list[Path], list[str]]:
    """Image files and class names of one split.

    Parameters
    ----------
    path : path-like
        The unpacked folder (``eurosat_s1`` or its parent).
    split : str
        ``"train"``, ``"val"`` (or ``"valid"``) or ``"test"``.
    """
    root = find_root(path)
    split = "val" if split == "valid" else split
    if split not in SPLITS:
        raise InputError(f"unknown EuroSAT-S1 split {split!r}; expected one of {SPLITS}")
    lists = [root / n.format(split) for n in _LIST_NAMES if (root / n.format(split)).is_file()]
    if not lists:
        raise InputError(f"{root}: no list file for split {split!r} "
                         f"({' or '.join(n.format(split) for n in _LIST_NAMES)})")
    names = [ln.strip().split(",")[0] for ln in lists[0].read_text().splitlines() if ln.strip()]
    if not names:
        raise InputError(f"{lists[0]} lists no images")
    files, labels, missing = [], [], []
    for name in names:
        stem = Path(name).stem
        label = stem.split("_")[0]
        file = root / "all_imgs" / label / f"{stem}.tif"
        if not file.is_file():
            missing.append(str(file))
        files.append(file)
        labels.append(label)
    if missing:
        raise InputError(f"{len(missing)} images of split {split!r} are missing, e.g. "
                         f"{missing[:2]}")
    return files, labels


def read_chip(path: str | os.PathLike, units: str = "db") -> np.ndarray:
    """One EuroSAT-S1 image as linear power, (2, H, W) float32 (VV, VH), nodata as NaN.

    Parameters
    ----------
    path : path-like
        GeoTIFF with the two bands VV and VH.
    units : {"db", "linear"}
        Units of the file's values (the published files hold dB).
    """
    with import_gate():
        import rasterio

    if units not in ("db", "linear"):
        raise InputError(f"units must be 'db' or 'linear'; got {units!r}")
    with rasterio.open(path) as src:
        if src.count != 2:
            raise InputError(f"{path}: {src.count} bands; EuroSAT-S1 images hold VV and VH")
        a = src.read().astype(np.float32)
        nodata = src.nodata
    if nodata is not None and not np.isnan(nodata):
        a[a == nodata] = np.nan
    if units == "db":
        a = np.power(np.float32(10.0), a / np.float32(10.0))
    return a
