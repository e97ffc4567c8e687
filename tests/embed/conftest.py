"""Fixtures of the embedding tests: tiny model weights and hand-built cubes (reader contract)."""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
import pytest
import xarray as xr


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """A terrafm-tiny safetensors file (seeded random values, not the default seed)."""
    from xterrafm.weights import convert_weights, load_model

    path = tmp_path_factory.mktemp("weights") / "terrafm-tiny.safetensors"
    convert_weights(load_model("terrafm-tiny", seed=123).state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def make_cube() -> Callable[..., xr.DataArray]:
    """Factory of lazy cubes following the reader contract.

    ``make_cube(height, width, modality="s1", n_dates=2, chunks=64, seed=0, nan_box=None,
    time=True)`` → DataArray ``(time, band, y, x)`` float32 in physical units (S1 linear power,
    S2 reflectance), dask-backed, CRS EPSG:32632 via ``spatial_ref``, ``attrs["modality"]``.
    ``nan_box=(y0, y1, x0, x1)`` puts NaN in that pixel box (all dates, all bands).
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from xterrafm.bands import band_names

    def make(height: int, width: int, modality: str = "s1", n_dates: int = 2,
             chunks: int = 64, seed: int = 0, nan_box: tuple | None = None,
             time: bool = True) -> xr.DataArray:
        gbox = GeoBox.from_bbox((600000, 5100000, 600000 + 10 * width, 5100000 + 10 * height),
                                "EPSG:32632", resolution=10)
        rng = np.random.default_rng(seed)
        bands = band_names(modality)
        shape = (n_dates, len(bands), height, width)
        if modality == "s1":
            values = rng.gamma(2.0, 0.05, size=shape)
        else:
            values = rng.uniform(0.02, 0.4, size=shape)
        values = values.astype(np.float32)
        if nan_box is not None:
            y0, y1, x0, x1 = nan_box
            values[:, :, y0:y1, x0:x1] = np.nan
        coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
        coords["band"] = bands
        coords["time"] = np.array([f"2021-0{i + 1}-15" for i in range(n_dates)],
                                  dtype="datetime64[ns]")
        cube = xr.DataArray(da.from_array(values, chunks=(1, -1, chunks, chunks)),
                            dims=("time", "band", "y", "x"), coords=coords,
                            attrs={"modality": modality, "item_ids": []})
        if not time:
            cube = cube.isel(time=0, drop=True)
        return cube

    return make
