"""Names of the inference precisions and how ``"auto"`` resolves on a device.

Torch-free, so that settings can be checked (and the command line built) without importing
torch. :class:`xterrafm.models.terrafm.TerraFM` maps the names to autocast dtypes.
"""

from __future__ import annotations

__all__ = ["PRECISIONS", "PRECISION_ALIASES", "canonical_precision", "resolve_precision"]

#: Precisions a model runs at (``"auto"`` is resolved per device by :func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Other spellings accepted for the same precisions.
PRECISION_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def canonical_precision(value: str) -> str:
    """The canonical name of a precision (``"bfloat16"`` -> ``"bf16"``).

    Raises
    ------
    ValueError
        For an unknown precision (the message lists the known ones).
    """
    key = str(value).strip().lower()
    key = PRECISION_ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {value!r}; expected one of {list(PRECISIONS)}")
    return key


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` -> ``"bf16"`` on CUDA, ``"fp32"`` elsewhere; other names pass through."""
    precision = canonical_precision(precision)
    if precision == "auto":
        return "bf16" if str(device).startswith("cuda") else "fp32"
    return precision
