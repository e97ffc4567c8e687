"""Embedding lazy cubes with TerraFM: settings, plan, window grids, block functions, the graph.

Public entry points: :func:`embed` (lazy ``xr.DataArray`` of embeddings), with its settings
(:class:`EmbedSettings`) and plan (:class:`EmbedPlan`); stores are written by
:func:`xterrafm.store.embed_to_zarr`. The ``.terrafm`` accessor (:mod:`xterrafm.accessor`)
exposes the same functions. Names are imported from their modules on first use.
"""

from __future__ import annotations

from xterrafm._lazy import lazy_exports

_EXPORTS = {
    "AxisWindows": "windows",
    "EmbedPlan": "plan",
    "EmbedSettings": "settings",
    "FusedPlan": "fused",
    "ModelSpec": "spec",
    "compute": "scheduling",
    "describe_model": "plan",
    "embed": "api",
    "embed_and_plan": "api",
    "embed_dask": "graph",
    "fused_embed_dask": "fused",
    "make_fused_plan": "fused",
    "keep_annotations": "scheduling",
    "make_plan": "plan",
    "output_geobox": "windows",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
