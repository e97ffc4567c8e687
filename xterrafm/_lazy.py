"""Lazy re-exports for package ``__init__`` files.

A package ``__init__`` that imports its submodules eagerly makes every submodule import run
the others first, and two threads importing two siblings at once (a Dask worker unpickling a
task while another thread runs one) can then meet in an import cycle, where CPython hands one
of them a partially initialised module. xterrafm's package ``__init__`` files therefore import
nothing of their own package at import time: they declare their public names here and the
defining module is imported on first attribute access.

This module imports only the standard library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any],
                 submodules: Iterable[str] = ()) -> tuple[Callable[[str], Any],
                                                          Callable[[], list]]:
    """Module ``__getattr__`` and ``__dir__`` functions resolving names on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping
        Public name -> module defining it, relative to ``package`` (``"stac"``) or absolute
        (``"xterrafm.weights"``).
    namespace : dict
        The package's ``globals()``; resolved names are cached there.
    submodules : iterable of str
        Submodules reachable as attributes (``xterrafm.io``) without an explicit import.

    Returns
    -------
    (__getattr__, __dir__)
        To assign to the package's ``__getattr__`` and ``__dir__``.
    """
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in subs:
            value = importlib.import_module(f"{package}.{name}")
        elif name in exports:
            target = exports[name]
            module = importlib.import_module(
                target if target.startswith("xterrafm") else f"{package}.{target}")
            value = getattr(module, name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list:
        return sorted({*namespace, *exports, *subs})

    return __getattr__, __dir__
