"""Working with embedding cubes: similarity to an example, nearest-neighbour search, change
between dates, and pictures.

Array cores on numpy/dask with a thin xarray layer; everything stays lazy until computed
(:func:`top_k` computes, block by block, with bounded memory). The ``.terrafm`` accessor exposes
the same functions (``emb.terrafm.similarity(x=..., y=...)``). Names are imported from their
modules on first use.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "change": "change_map",
    "cosine_along": "cosine",
    "plot_map": "pictures",
    "plot_pca": "pictures",
    "plot_side_by_side": "pictures",
    "plot_true_colour": "pictures",
    "query_vector": "similarity_map",
    "similarity": "similarity_map",
    "top_k": "search",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
