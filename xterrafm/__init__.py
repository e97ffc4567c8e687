"""xterrafm: TerraFM embeddings, pretraining and evaluation for xarray and Dask.

Importing the package registers the ``.terrafm`` accessor on xarray objects; everything else
(torch models, readers, Dask code) is imported on first use of its name.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports
from xterrafm._version import __version__

# Registers the ``.terrafm`` accessors. The accessor module imports xarray and nothing of
# xterrafm, so importing it here cannot close an import cycle.
from xterrafm import accessor as _accessor  # noqa: F401  isort: skip

_EXPORTS = {
    "TerraFM": "xterrafm.models.terrafm",
    "load_model": "xterrafm.weights",
    "convert_weights": "xterrafm.weights",
    "normalize": "xterrafm.normalization",
    "compute_stats": "xterrafm.normalization",
    "embed": "xterrafm.embedding.api",
    "embed_to_zarr": "xterrafm.store.write",
    "store_status": "xterrafm.store.status",
    "open_embeddings": "xterrafm.store.read",
    "export_store": "xterrafm.export.run",
    "EmbedSettings": "xterrafm.embedding.settings",
    "XterrafmError": "xterrafm.errors",
}
_SUBMODULES = ("accessor", "analysis", "bands", "batch", "cli", "data", "datasets", "embedding",
               "errors", "eval", "export", "io", "models", "normalization", "pca", "pretrain",
               "store", "tilestats", "weights")

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), _SUBMODULES)
