"""Labelled image chips: a folder of GeoTIFFs, one sub-folder per class, embedded on the fly.

Layout (the class is the sub-folder's name; classes are numbered in sorted name order)::

    chips/
      forest/  a.tif  b.tif ...
      water/   c.tif ...

Every chip is one GeoTIFF holding the bands of one modality in TerraFM order (S2: B01 B02 B03
B04 B05 B06 B07 B08 B8A B09 B11 B12; S1: VV VH), height and width multiples of 16. Values
are converted to physical units as ``value * scale + offset`` (for S2 digital numbers of
processing baseline >= 04.00: ``scale=1e-4, offset=-0.1``; chips already in reflectance or
linear backscatter: the defaults 1 and 0). The file's nodata becomes NaN; the model input is
made by :func:`xterrafm.model_input.normalize_and_fill`, as on every other path to the model
(a pixel missing any band is 0 in every band).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    import rasterio

__all__ = ["ChipSet", "embed_chips", "embed_images", "find_chips", "read_chip"]

_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class ChipSet:
    """Chip files and their labels.

    Attributes
    ----------
    paths : list of pathlib.Path
    labels : numpy.ndarray of int64, shape (N,)
        Index into ``class_names``.
    class_names : list of str
        Sorted sub-folder names.
    """

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]


def find_chips(folder: str | os.PathLike) -> ChipSet:
    """List the chips of a ``<folder>/<class_name>/*.tif`` tree (see the module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"chip folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels, names = [], [], []
    for d in class_dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not files:
            continue
        names.append(d.name)
        paths += files
        labels += [len(names) - 1] * len(files)
    if not paths:
        raise ValueError(
            f"{root} holds no chips: expected <folder>/<class_name>/*.tif (one sub-folder per "
            "class)"
        )
    return ChipSet(paths=paths, labels=np.asarray(labels, dtype=np.int64), class_names=names)


def read_chip(
    path: str | os.PathLike, n_bands: int, scale: float = 1.0, offset: float = 0.0
) -> np.ndarray:
    """Read one chip as float32 (C, H, W) in physical units, nodata → NaN."""
    with rasterio.open(path) as src:
        if src.count != n_bands:
            raise ValueError(f"{path}: {src.count} bands, the modality needs {n_bands}")
        a = src.read().astype(np.float32)
        nodata = src.nodata
    invalid = np.isnan(a) if nodata is None or np.isnan(nodata) else a == nodata
    a = a * np.float32(scale) + np.float32(offset)
    a[invalid] = np.nan
    return a


def embed_images(
    images: Iterable[np.ndarray],
    model,
    modality: str,
    *,
    spec: str = "terrafm-v1",
    batch_size: int = 16,
    size: int | None = None,
) -> np.ndarray:
    """CLS embeddings of images in physical units: normalise, fill NaN with 0, run the model.

    Parameters
    ----------
    images : iterable of numpy.ndarray, each (C, H, W) float
        Images in physical units (reflectance, linear backscatter), NaN = nodata.
    model : xterrafm.TerraFM
        Encoder (``xterrafm.load_model(...)``), in eval mode.
    modality : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``.
    spec : str
        Normalisation spec for ``xterrafm.normalize``.
    batch_size : int
        Images per forward pass (consecutive images of equal size are batched).
    size : int, optional
        Resize every normalised image bilinearly to ``size`` × ``size`` px first (e.g. 224,
        the pretraining size, for benchmark chips of 64 or 120 px). Without it, H and W must
        be multiples of 16.

    Returns
    -------
    numpy.ndarray of float32, shape (N, D)
    """
    with import_gate():
        import torch
        import torch.nn.functional as F

    from xterrafm.model_input import normalize_and_fill

    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if not batch:
            return
        x = normalize_and_fill(np.stack(batch), modality, spec)[0]
        t = torch.from_numpy(x.astype(np.float32)).to(device)
        if size is not None:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            out.append(model(t, modality=modality).float().cpu().numpy())
        batch.clear()

    for i, img in enumerate(images):
        if size is None and (img.shape[-2] % 16 or img.shape[-1] % 16):
            raise ValueError(
                f"image {i}: size {img.shape[-2:]} is not a multiple of 16 px (pass size=224 "
                "to resize)"
            )
        if batch and (batch[0].shape != img.shape or len(batch) == batch_size):
            flush()
        batch.append(img)
    flush()
    if not out:
        raise ValueError("no images to embed")
    return np.concatenate(out)


def embed_chips(
    paths: list[Path] | ChipSet,
    model,
    modality: str,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    spec: str = "terrafm-v1",
    batch_size: int = 16,
    size: int | None = None,
) -> np.ndarray:
    """CLS embeddings of chip files (`read_chip` then `embed_images`).

    Parameters
    ----------
    paths : list of path or ChipSet
        Chip files.
    model, modality, spec, batch_size, size
        As in `embed_images`.
    scale, offset : float
        ``physical = value * scale + offset``.

    Returns
    -------
    numpy.ndarray of float32, shape (N, D)
    """
    from xterrafm.bands import get_modality

    files = paths.paths if isinstance(paths, ChipSet) else [Path(p) for p in paths]
    n_bands = get_modality(modality).n_bands
    images = (read_chip(f, n_bands, scale=scale, offset=offset) for f in files)
    return embed_images(images, model, modality, spec=spec, batch_size=batch_size, size=size)
