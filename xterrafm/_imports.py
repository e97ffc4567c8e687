"""First imports of third-party packages, one thread at a time.

Importing a package runs its ``__init__``, which often imports its own submodules; while that
runs, a second thread that imports one of those submodules directly (``import
torch.nn.functional``, ``from dask.utils import ...``) is not made to wait for the package and
can meet the first thread in an import cycle: CPython then hands one of them a partially
initialised module (``ImportError: cannot import name ... from partially initialized module``,
``AttributeError: partially initialized module 'torch' has no attribute ...``). A Dask worker
does exactly this: its event loop unpickles tasks (importing the modules of their functions)
while its executor threads run other tasks.

Every xterrafm module therefore imports third-party packages inside ``with import_gate():``.
The gate is one re-entrant lock per process, so at most one thread at a time runs third-party
imports on behalf of xterrafm, in whatever order the modules are imported. It never deadlocks
with CPython's per-module locks: a thread holding the gate only imports third-party packages,
which never import xterrafm modules, and xterrafm's own (sibling) imports happen outside it.

This module imports only the standard library.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["import_gate"]

_GATE = threading.RLock()


def _fresh_gate_in_child() -> None:
    # a process forked while another thread held the gate would otherwise inherit it held
    global _GATE
    _GATE = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_gate_in_child)


@contextmanager
def import_gate() -> Iterator[None]:
    """Hold the process's import gate while the ``with`` block imports third-party packages."""
    with _GATE:
        yield
