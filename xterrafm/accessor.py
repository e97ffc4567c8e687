"""The ``.terrafm`` accessor on xarray objects: its methods *are* the module functions.

``cube.terrafm.embed(...)`` is :func:`xterrafm.embed` called with the cube as first argument,
with that function's signature and docstring; the same holds for every method. Registered on
``import xterrafm`` for DataArrays and Datasets. Importing this module imports xarray and
nothing of xterrafm: a method's module is imported when the method is first looked up.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

from xterrafm._imports import import_gate

with import_gate():
    import xarray as xr

__all__ = ["TerraFMDataArrayAccessor", "TerraFMDatasetAccessor"]


class _Method:
    """An accessor attribute that is the function ``module.name`` bound to the wrapped object."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def _function(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)

    def __get__(self, accessor: Any, owner: type | None = None) -> Any:
        func = self._function()
        if accessor is None:
            return func

        @functools.wraps(func)
        def method(*args: Any, **kwargs: Any) -> Any:
            return func(accessor._obj, *args, **kwargs)

        params = list(inspect.signature(func).parameters.values())[1:]
        method.__signature__ = inspect.signature(func).replace(parameters=params)
        return method


class _TerraFMAccessor:
    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    embed = _Method("xterrafm.embedding.api", "embed")
    embed_to_zarr = _Method("xterrafm.store.write", "embed_to_zarr")
    # on embedding cubes (xterrafm.analysis)
    similarity = _Method("xterrafm.analysis.similarity_map", "similarity")
    top_k = _Method("xterrafm.analysis.search", "top_k")
    change = _Method("xterrafm.analysis.change_map", "change")
    plot_pca = _Method("xterrafm.analysis.pictures", "plot_pca")
    plot_map = _Method("xterrafm.analysis.pictures", "plot_map")
    # on input cubes
    plot_true_colour = _Method("xterrafm.analysis.pictures", "plot_true_colour")


@xr.register_dataarray_accessor("terrafm")
class TerraFMDataArrayAccessor(_TerraFMAccessor):
    """``da.terrafm``: TerraFM on a ``(time, band, y, x)`` cube."""


@xr.register_dataset_accessor("terrafm")
class TerraFMDatasetAccessor(_TerraFMAccessor):
    """``ds.terrafm``: TerraFM on a Dataset with one variable per band."""
