"""What the encoder receives: normalised pixels with no NaN, and where they were valid.

One function, :func:`normalize_and_fill`, turns pixels in physical units (Sentinel-2
reflectance, Sentinel-1 linear power; NaN for no data) into the encoder's input. Inference
(:mod:`xterrafm.embedding.blocks`), training (:mod:`xterrafm.data.dataset`), evaluation chips
(:mod:`xterrafm.eval.chips`) and the pretraining evidence (:mod:`xterrafm.pretrain.evidence`)
all call it, so the model sees the same input for the same pixels on every path.

The fill rule:

1. normalise with the named spec (NaN stays NaN; ``None`` leaves the values as they are);
2. a pixel is *valid* when every band is finite after normalisation;
3. every band of an invalid pixel is set to ``0``, the mean of the normalised data. A pixel that
   lacks one band is not half-kept: zeroing only the missing band would give the model a
   spectrum it never saw, so the whole pixel counts as missing (and as invalid where the
   valid fraction of a window or patch is measured).

This module imports numpy only (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["FILL_VALUE", "normalize_and_fill"]

#: Value every band of an invalid pixel gets (the mean of the normalised data).
FILL_VALUE = 0.0


def normalize_and_fill(pixels: Any, modality: str,
                       spec: str | Path | Mapping[str, Any] | None = "terrafm-v1",
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Normalise pixels, find the valid ones and fill the others with :data:`FILL_VALUE`.

    Parameters
    ----------
    pixels : array-like, shape (..., C, H, W)
        Physical units (S2 reflectance, S1 linear power), NaN where there is no data.
    modality : str
        Modality whose statistics apply (``"s1"``, ``"s2_l1c"``, ``"s2_l2a"``).
    spec : str, path, mapping or None
        Normalisation spec (see :func:`xterrafm.normalization.normalize`); None leaves the
        values as they are (the input is normalised already).

    Returns
    -------
    filled : ndarray float32, shape (..., C, H, W)
        Normalised values; every band of an invalid pixel is 0.
    valid : ndarray bool, shape (..., H, W)
        True where every band is finite after normalisation.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim < 3:
        raise ValueError(f"expected pixels of shape (..., C, H, W); got shape {x.shape}")
    if spec is not None:
        from xterrafm.normalization import normalize

        x = np.asarray(normalize(x, modality, spec=spec), dtype=np.float32)
    valid = np.isfinite(x).all(axis=-3)
    filled = np.where(valid[..., None, :, :], x, np.float32(FILL_VALUE))
    return filled.astype(np.float32, copy=False), valid
