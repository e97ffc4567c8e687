"""xterrafm: TerraFM embeddings, pretraining and evaluation for xarray and Dask.

Importing the package registers the ``.terrafm`` accessor on xarray objects.
Heavy submodules (torch models, readers) are imported on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from xterrafm import bands
from xterrafm._version import __version__

# name -> (module, attribute) resolved lazily, so that `import xterrafm` stays light.
_LAZY = {
    "TerraFM": ("xterrafm.models", "TerraFM"),
    "load_model": ("xterrafm.weights", "load_model"),
    "convert_weights": ("xterrafm.weights", "convert_weights"),
    "normalize": ("xterrafm.normalization", "normalize"),
    "compute_stats": ("xterrafm.normalization", "compute_stats"),
}
_SUBMODULES = {"models", "weights", "normalization", "io", "datasets", "tilestats", "eval", "data",
               "pretrain", "embedding", "accessor", "cli"}

__all__ = ["__version__", "bands", *_LAZY, *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"xterrafm.{name}")
    raise AttributeError(f"module 'xterrafm' has no attribute {name!r}")


# Registers the ``.terrafm`` accessors; it imports xarray only (torch loads on first .embed()).
from xterrafm import accessor as _accessor  # noqa: E402,F401
