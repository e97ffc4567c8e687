"""Training cubes as read by the data loader: modality variables + land-cover on one grid.

A training cube is an ``xr.Dataset`` on one pixel grid (dims ``y``, ``x``) with

- one variable per modality present, named ``s1``, ``s2_l1c`` or ``s2_l2a``, dims
  ``(time, band, y, x)`` (per-modality dim names such as ``s2_l2a_time``/``s2_l2a_band``, as
  :func:`xterrafm.io.grid.build_training_cube` writes them, let modalities with different band
  counts share a Dataset; the time dim may be absent for a single date),
  float32 in physical units with NaN as nodata — the layout of the cubes that
  ``xterrafm.io`` writes to Zarr and builds from STAC or GeoTIFF;
- optionally ``landcover`` with dims ``(y, x)``: ESA WorldCover class codes, 0 = nodata.

:class:`TrainingCube` opens such a cube from a Zarr path (lazily, without dask) or wraps an
already opened ``xr.Dataset`` (e.g. dask-backed, from STAC), and reads pixel windows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from xterrafm._imports import import_gate
from xterrafm.bands import MODALITIES, get_modality

with import_gate():
    import numpy as np
    import xarray as xr

__all__ = ["TrainingCube", "LANDCOVER_VAR"]

LANDCOVER_VAR = "landcover"


def _band_and_time_dims(da: xr.DataArray) -> tuple[str, str | None]:
    """Names of the band dim (``band``, ``band_*`` or ``*_band``) and of the time dim (or None)."""
    extra = [d for d in da.dims if d not in ("y", "x")]
    bands = [d for d in extra if str(d).startswith("band") or str(d).endswith("_band")]
    if len(bands) != 1 or len(extra) > 2:
        raise ValueError(
            f"variable {da.name!r} must have dims (time, band, y, x) (band dim named 'band', "
            f"'band_*' or '*_band'); got {da.dims}"
        )
    rest = [d for d in extra if d != bands[0]]
    return str(bands[0]), (str(rest[0]) if rest else None)


def _spatial_chunks(da: xr.DataArray) -> tuple[int, int] | None:
    if da.chunks is not None:
        chunks = dict(zip(da.dims, da.chunks, strict=True))
        return int(chunks["y"][0]), int(chunks["x"][0])
    pref = da.encoding.get("preferred_chunks")
    if pref and "y" in pref and "x" in pref:
        return int(pref["y"]), int(pref["x"])
    enc = da.encoding.get("chunks")
    if enc:
        chunks = dict(zip(da.dims, enc, strict=True))
        return int(chunks["y"]), int(chunks["x"])
    return None


class TrainingCube:
    """Window reads from one training cube.

    Parameters
    ----------
    source : path, zarr store or xr.Dataset
        See :func:`xterrafm.io.open_training_cube`. Paths are re-opened lazily in each
        process (so the object pickles cheaply into DataLoader workers).
    modalities : sequence of str, optional
        Restrict to these modalities (default: every modality variable in the cube).
    landcover_var : str
        Name of the land-cover variable.
    """

    def __init__(
        self,
        source: str | os.PathLike | xr.Dataset | object,
        modalities: Sequence[str] | None = None,
        landcover_var: str = LANDCOVER_VAR,
    ) -> None:
        self._source = source
        self._ds: xr.Dataset | None = None
        self.landcover_var = landcover_var
        ds = self.dataset
        found = [m for m in MODALITIES if m in ds.data_vars]
        if modalities is not None:
            missing = [m for m in modalities if m not in found]
            if missing:
                raise ValueError(f"modalities {missing} not in the cube (it has {found})")
            found = [m for m in MODALITIES if m in modalities]
        if not found:
            raise ValueError(
                f"the training cube has no modality variable; expected some of {list(MODALITIES)}"
                f", found {list(ds.data_vars)}"
            )
        self.modalities: tuple[str, ...] = tuple(found)
        for m in self.modalities:
            da = ds[m]
            for d in ("y", "x"):
                if d not in da.dims:
                    raise ValueError(f"variable {m!r} lacks dim {d!r}: dims {da.dims}")
            band_dim, _ = _band_and_time_dims(da)
            if da.sizes[band_dim] != get_modality(m).n_bands:
                raise ValueError(
                    f"variable {m!r} has {da.sizes[band_dim]} bands, TerraFM expects "
                    f"{get_modality(m).n_bands} ({get_modality(m).band_names})"
                )
        self.height = int(ds.sizes["y"])
        self.width = int(ds.sizes["x"])
        self.band_dims = {m: _band_and_time_dims(ds[m])[0] for m in self.modalities}
        self.time_dims = {m: _band_and_time_dims(ds[m])[1] for m in self.modalities}
        self.n_times = {
            m: (int(ds[m].sizes[t]) if t else 1) for m, t in self.time_dims.items()
        }
        self.has_landcover = landcover_var in ds.data_vars
        if self.has_landcover and set(ds[landcover_var].dims) != {"y", "x"}:
            raise ValueError(f"{landcover_var!r} must have dims (y, x), got {ds[landcover_var].dims}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if isinstance(self._source, (str, os.PathLike)):
            state["_ds"] = None
        return state

    @property
    def dataset(self) -> xr.Dataset:
        """The opened ``xr.Dataset`` (opened on first use in each process)."""
        if self._ds is None:
            from xterrafm.io.grid import open_training_cube

            self._ds = open_training_cube(self._source, chunks=None)
        return self._ds

    @property
    def chunks(self) -> tuple[int, int] | None:
        """Stored spatial chunk sides ``(y, x)`` of the modality variables (largest)."""
        found = [c for c in (_spatial_chunks(self.dataset[m]) for m in self.modalities) if c]
        if not found:
            return None
        return max(c[0] for c in found), max(c[1] for c in found)

    def _window(self, da: xr.DataArray, window: Sequence[int]) -> xr.DataArray:
        y0, y1, x0, x1 = (int(v) for v in window)
        return da.isel(y=slice(y0, y1), x=slice(x0, x1))

    def read_modality(
        self, modality: str, window: Sequence[int], times: Sequence[int] | None = None,
        bands: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Read ``(T, C, h, w)`` float32 physical values of a pixel window.

        Parameters
        ----------
        modality : str
        window : (y0, y1, x0, x1)
            Pixel window.
        times : sequence of int, optional
            Time indices to read (default all).
        bands : sequence of int, optional
            Band indices to read (default all).
        """
        da = self._window(self.dataset[modality], window)
        tdim = self.time_dims[modality]
        if tdim is None:
            da = da.expand_dims("__time")
            tdim = "__time"
        sel: dict[str, object] = {}
        if times is not None:
            sel[tdim] = np.asarray(times, dtype=np.int64)
        band_dim = self.band_dims[modality]
        if bands is not None:
            sel[band_dim] = np.asarray(bands, dtype=np.int64)
        if sel:
            da = da.isel(sel)
        da = da.transpose(tdim, band_dim, "y", "x")
        return np.asarray(da.values, dtype=np.float32)

    def read_landcover(self, window: Sequence[int]) -> np.ndarray:
        """Read the ``(h, w)`` uint8 land-cover window (zeros when the cube has none)."""
        y0, y1, x0, x1 = (int(v) for v in window)
        if not self.has_landcover:
            return np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        values = self._window(self.dataset[self.landcover_var], window).transpose("y", "x").values
        values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
        return values.astype(np.uint8)

    def describe(self) -> Mapping[str, object]:
        """Short description for logs: modalities, dates and size."""
        return {
            "modalities": list(self.modalities),
            "n_times": dict(self.n_times),
            "height": self.height,
            "width": self.width,
            "landcover": self.has_landcover,
        }
