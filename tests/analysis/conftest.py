"""Fixtures of the analysis tests: small lazy embedding cubes with known structure."""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from tests.embed.conftest import make_cube  # noqa: F401  (input cubes of the reader contract)


@pytest.fixture(scope="session")
def make_emb() -> Callable[..., xr.DataArray]:
    """Factory of lazy ``(time, embedding, y, x)`` cubes as :func:`xterrafm.embed` returns them.

    ``make_emb(n_time=2, dim=8, ny=6, nx=7, chunks=3, seed=0)``: standard-normal values, cell
    centres 160 m apart in EPSG:32632, dates 2024-06-01 and every 10 days after.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    def make(n_time: int = 2, dim: int = 8, ny: int = 6, nx: int = 7, chunks: int = 3,
             seed: int = 0, values: np.ndarray | None = None) -> xr.DataArray:
        if values is not None:
            n_time, dim, ny, nx = np.shape(values)
        gbox = GeoBox.from_bbox((600000, 5100000, 600000 + 160 * nx, 5100000 + 160 * ny),
                                "EPSG:32632", resolution=160)
        if values is None:
            values = np.random.default_rng(seed).standard_normal((n_time, dim, ny, nx))
        values = np.asarray(values, dtype=np.float32)
        coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
        coords["time"] = np.datetime64("2024-06-01T10:30", "ns") + \
            np.arange(values.shape[0]) * np.timedelta64(10, "D")
        coords["embedding"] = np.arange(values.shape[1])
        return xr.DataArray(da.from_array(values, chunks=(1, -1, chunks, chunks)),
                            dims=("time", "embedding", "y", "x"), coords=coords,
                            name="embeddings", attrs={"model": "terrafm-tiny", "level": "tile"})

    return make
