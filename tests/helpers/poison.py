"""An object that kills the Dask worker that unpickles it, as an import race once did.

Unpickled in a process whose environment sets ``XTERRAFM_TEST_POISON``, it raises ImportError
inside the worker's event loop (while the worker reads the task from the scheduler); the
exception ends the worker's connection and the worker closes itself, and its nanny does not
start another. Anywhere else it unpickles to itself.
"""

from __future__ import annotations

import os

import numpy as np

ENV = "XTERRAFM_TEST_POISON"
MESSAGE = "cannot import name 'RetryingRioDriver' from partially initialized module (injected)"


def _revive() -> Poison:
    if os.environ.get(ENV):
        raise ImportError(MESSAGE)
    return Poison()


class Poison:
    """Pickles to a call of :func:`_revive`."""

    def __reduce__(self):
        return (_revive, ())


def passthrough(block: np.ndarray, marker: Poison | None = None) -> np.ndarray:
    """A block function that carries ``marker`` in its task."""
    return block
