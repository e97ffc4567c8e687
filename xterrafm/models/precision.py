"""Names of the inference precisions and how ``"auto"`` resolves on a device.

Torch-free, so that settings can be checked (and the command line built) without importing
torch (only resolving ``"auto"`` on a CPU without a given answer asks torch, through
:mod:`xterrafm.models.cpu_bf16`). :class:`xterrafm.models.terrafm.TerraFM` maps the names to
autocast dtypes.
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


def resolve_precision(precision: str, device: str, cpu_bf16: bool | None = None) -> str:
    """The precision a model runs at on ``device``.

    Parameters
    ----------
    precision : str
        A name of :data:`PRECISIONS` (or an alias). Names other than ``"auto"`` pass through.
    device : str
        Resolved torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    cpu_bf16 : bool, optional
        Whether the CPU computes bf16 natively; default: detect it in this process
        (:func:`xterrafm.models.cpu_bf16.cpu_bf16`).

    Returns
    -------
    str
        ``"auto"`` -> ``"bf16"`` on CUDA and on a CPU with native bf16, ``"fp32"`` elsewhere.
    """
    precision = canonical_precision(precision)
    if precision != "auto":
        return precision
    device = str(device)
    if device.startswith("cuda"):
        return "bf16"
    if device != "cpu":
        return "fp32"
    if cpu_bf16 is None:
        from xterrafm.models.cpu_bf16 import cpu_bf16 as detect

        cpu_bf16 = detect().native
    return "bf16" if cpu_bf16 else "fp32"
