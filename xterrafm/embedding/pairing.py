"""Pairing the dates of co-registered cubes for fused embeddings: nearest within a tolerance.

Sentinel-1 and Sentinel-2 are not acquired on the same days. A fused embedding is made at each
date of the *anchor* cube (the optical one, see :mod:`xterrafm.embedding.fused_api`); every
other cube contributes the acquisition **nearest in time** to that date when it lies within
``pair_tolerance`` (ties go to the earlier acquisition), and nothing otherwise. The same
acquisition may serve two anchor dates. A date without a partner is embedded from the anchor
alone, exactly as a single-modality embedding would be.

The default tolerance, 6 days, is half the 12-day repeat cycle of one Sentinel-1 satellite:
with a regular acquisition plan every optical date then finds its nearest radar pass.

Importing this module imports only the standard library (numpy is imported by
:func:`pair_dates`): the settings use :func:`parse_tolerance` to check the value.
"""

from __future__ import annotations

import re
from typing import Any

from xterrafm._imports import import_gate

__all__ = ["DEFAULT_PAIR_TOLERANCE", "pair_dates", "parse_tolerance"]

#: Default largest time between an anchor date and its partner.
DEFAULT_PAIR_TOLERANCE = "6D"

_UNITS = {"d": 86400.0, "day": 86400.0, "days": 86400.0, "h": 3600.0, "hour": 3600.0,
          "hours": 3600.0, "min": 60.0, "m": 60.0, "minutes": 60.0, "s": 1.0, "sec": 1.0,
          "seconds": 1.0, "w": 7 * 86400.0, "week": 7 * 86400.0, "weeks": 7 * 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]+)\s*$")


def parse_tolerance(text: str) -> float:
    """Seconds of a tolerance written as a number and a unit: ``"6D"``, ``"36h"``, ``"2 weeks"``.

    Units: ``D``/``day(s)``, ``h``/``hour(s)``, ``min``/``m``, ``s``, ``W``/``week(s)``
    (case-insensitive).

    Raises
    ------
    ValueError
        Not a non-negative number followed by a known unit.
    """
    match = _PATTERN.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"expected a duration such as '6D', '36h' or '2W'; got {text!r}")
    return float(match.group(1)) * _UNITS[unit]


def pair_dates(anchor: Any, other: Any, tolerance_s: float) -> Any:
    """For each anchor date, the index of the nearest ``other`` date within the tolerance.

    Parameters
    ----------
    anchor : array of datetime64, shape (T,)
        Dates of the anchor cube (the dates of the output).
    other : array of datetime64, shape (S,)
        Dates of the cube to pair with them (any order).
    tolerance_s : float
        Largest allowed distance in seconds (inclusive).

    Returns
    -------
    ndarray of int64, shape (T,)
        Index into ``other`` of each anchor date's partner; -1 where no date of ``other`` lies
        within the tolerance. Equal distances go to the earlier date of ``other``.
    """
    with import_gate():
        import numpy as np

    a = np.asarray(anchor, dtype="datetime64[ns]").astype(np.int64)
    o = np.asarray(other, dtype="datetime64[ns]").astype(np.int64)
    if o.size == 0:
        return np.full(a.shape, -1, dtype=np.int64)
    distance = np.abs(a[:, None] - o[None, :]).astype(np.float64)  # (T, S) in ns
    # nearest first, then the earlier acquisition
    order = np.lexsort((np.broadcast_to(o[None, :], distance.shape), distance), axis=1)
    best = order[:, 0]
    ok = distance[np.arange(a.size), best] <= tolerance_s * 1e9
    return np.where(ok, best, -1).astype(np.int64)
