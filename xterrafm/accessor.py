"""The ``.terrafm`` accessor on xarray objects: a thin facade over :mod:`xterrafm.embedding`.

Registered on ``import xterrafm`` for DataArrays with a ``band`` dimension (what
:mod:`xterrafm.io` returns) and Datasets with one variable per band (what odc-stac returns).
Importing this module only imports xarray; torch is loaded when a method runs.
"""

from __future__ import annotations

from typing import Any

from xterrafm._imports import import_gate

with import_gate():
    import xarray as xr

__all__ = ["TerraFMDataArrayAccessor", "TerraFMDatasetAccessor"]


class _TerraFMAccessor:
    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    def embed(self, model: str = "terrafm-b", weights: Any = None, modality: str | None = None,
              level: str = "tile", tile: int = 224, stride: int | None = None,
              batch_size: int | None = None, device: str = "auto", precision: str = "auto",
              normalize: str | None = "terrafm-v1", min_valid: float = 0.5,
              **kwargs: Any) -> xr.DataArray:
        """Lazy TerraFM embeddings of this cube; see :func:`xterrafm.embedding.embed`."""
        from xterrafm.embedding.api import embed

        return embed(self._obj, model=model, weights=weights, modality=modality, level=level,
                     tile=tile, stride=stride, batch_size=batch_size, device=device,
                     precision=precision, normalize=normalize, min_valid=min_valid, **kwargs)

    def embed_to_zarr(self, store: Any, **kwargs: Any) -> Any:
        """Embed into a resumable Zarr store; see :func:`xterrafm.embedding.embed_to_zarr`.

        Returns
        -------
        EmbedSummary
        """
        from xterrafm.embedding.zarr_output import embed_to_zarr

        return embed_to_zarr(self._obj, store, **kwargs)


@xr.register_dataarray_accessor("terrafm")
class TerraFMDataArrayAccessor(_TerraFMAccessor):
    """``da.terrafm``: TerraFM on a ``(time, band, y, x)`` DataArray."""

    def __init__(self, obj: xr.DataArray) -> None:
        super().__init__(obj)

    def _check(self) -> None:
        if "band" not in self._obj.dims:
            raise AttributeError("the .terrafm accessor needs a DataArray with a 'band' dimension")

    def embed(self, *args: Any, **kwargs: Any) -> xr.DataArray:  # noqa: D102
        self._check()
        return super().embed(*args, **kwargs)

    embed.__doc__ = _TerraFMAccessor.embed.__doc__

    def embed_to_zarr(self, store: Any, **kwargs: Any) -> Any:  # noqa: D102
        self._check()
        return super().embed_to_zarr(store, **kwargs)

    embed_to_zarr.__doc__ = _TerraFMAccessor.embed_to_zarr.__doc__


@xr.register_dataset_accessor("terrafm")
class TerraFMDatasetAccessor(_TerraFMAccessor):
    """``ds.terrafm``: TerraFM on a Dataset with one variable per band."""
