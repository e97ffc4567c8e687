"""Label rasters onto embedding grids by majority, and (X, y) pairs from embedding cubes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from rasterio.transform import from_origin

from xterrafm.eval.inputs import (
    LABEL_NODATA,
    labelled_samples,
    labels_to_embedding_grid,
    open_embedding_cube,
)

CRS = "EPSG:32632"
X0, Y0, RES = 500_000.0, 5_000_080.0, 10.0


def _write_labels(path, arr, res=RES, nodata=0):
    with rasterio.open(
        path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
        dtype=arr.dtype, crs=CRS, transform=from_origin(X0, Y0, res, res), nodata=nodata,
    ) as dst:
        dst.write(arr, 1)
    return path


def _embedding_cube(n_windows: int, tile: int, stride: int, n_time: int = 1, dim: int = 3):
    """A (time, embedding, y, x) cube whose windows start every `stride` px of a 10 m grid."""
    centres = (np.arange(n_windows) * stride + tile / 2) * RES
    rng = np.random.default_rng(0)
    emb = xr.DataArray(
        rng.normal(size=(n_time, dim, n_windows, n_windows)).astype(np.float32),
        dims=("time", "embedding", "y", "x"),
        coords={"y": Y0 - centres, "x": X0 + centres},
        attrs={"level": "tile", "tile": tile, "stride": stride},
    )
    return emb.rio.write_crs(CRS)


def _brute_force_majority(arr, tile, stride, n_windows, nodata=0):
    """Majority per window by counting; None where the top count is tied."""
    out = {}
    for i in range(n_windows):
        for j in range(n_windows):
            win = arr[i * stride : i * stride + tile, j * stride : j * stride + tile]
            vals = win[win != nodata]
            if vals.size == 0:
                out[i, j] = LABEL_NODATA
                continue
            v, c = np.unique(vals, return_counts=True)
            if (c == c.max()).sum() == 1:
                out[i, j] = int(v[np.argmax(c)])
    return out


# 8 x 8 px of 10 m; four 4 x 4 blocks with clear majorities, nodata 0 in two of them
HAND = np.array(
    [
        [10, 10, 10, 20, 30, 30, 0, 0],
        [10, 10, 20, 20, 30, 0, 0, 0],
        [10, 10, 10, 20, 30, 30, 0, 0],
        [10, 10, 10, 20, 0, 0, 0, 0],
        [0, 0, 0, 0, 40, 40, 50, 50],
        [0, 0, 0, 0, 40, 40, 50, 50],
        [0, 0, 0, 0, 40, 40, 40, 50],
        [0, 0, 0, 0, 40, 40, 50, 40],
    ],
    dtype=np.uint8,
)


def test_majority_over_non_overlapping_windows(tmp_path):
    path = _write_labels(tmp_path / "labels.tif", HAND)
    emb = _embedding_cube(2, tile=4, stride=4)
    grid = labels_to_embedding_grid(path, emb)
    # 10 wins 11:5 over 20; 30 wins over nodata (ignored); no label at all; 40 wins 10:6
    np.testing.assert_array_equal(grid.values, [[10, 30], [LABEL_NODATA, 40]])
    np.testing.assert_array_equal(grid["x"].values, emb["x"].values)


def test_majority_follows_finer_label_grid(tmp_path):
    fine = np.repeat(np.repeat(HAND, 2, axis=0), 2, axis=1)  # 5 m pixels, same ground
    path = _write_labels(tmp_path / "fine.tif", fine, res=RES / 2)
    grid = labels_to_embedding_grid(path, _embedding_cube(2, tile=4, stride=4))
    np.testing.assert_array_equal(grid.values, [[10, 30], [LABEL_NODATA, 40]])


@pytest.mark.parametrize(("tile", "stride"), [(4, 2), (6, 2), (4, 4)])
def test_majority_is_over_the_whole_window_when_windows_overlap(tmp_path, tile, stride):
    rng = np.random.default_rng(1)
    arr = rng.choice(np.array([1, 2, 3, 0], np.uint8), size=(12, 12), p=[0.5, 0.25, 0.15, 0.1])
    path = _write_labels(tmp_path / "rand.tif", arr)
    n = 12 // stride  # the last windows run past the raster's edge (padded, never dropped)
    grid = labels_to_embedding_grid(path, _embedding_cube(n, tile=tile, stride=stride)).values
    expected = _brute_force_majority(arr, tile, stride, n)
    assert len(expected) >= n * n // 2  # most windows have an untied majority
    for (i, j), value in expected.items():
        assert grid[i, j] == value, (i, j)


def test_labelled_samples_drop_nan_windows_and_unlabelled(tmp_path):
    path = _write_labels(tmp_path / "labels.tif", HAND)
    emb = _embedding_cube(2, tile=4, stride=4, n_time=2)
    emb[1, :, 0, 0] = np.nan  # window skipped at time 1
    samples = labelled_samples(emb, path)
    # 3 labelled windows per time step, minus the NaN one
    assert len(samples) == 5
    assert samples.x.shape == (5, 3)
    np.testing.assert_array_equal(samples.y, [10, 30, 40, 30, 40])
    np.testing.assert_array_equal(samples.times, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(samples.x[3], emb.values[1, :, 0, 1])


def test_embedding_cube_round_trips_through_zarr(tmp_path):
    emb = _embedding_cube(2, tile=4, stride=4).rename("embeddings")
    emb.to_dataset().to_zarr(tmp_path / "emb.zarr")
    back = open_embedding_cube(tmp_path / "emb.zarr")
    assert back.rio.crs == emb.rio.crs
    path = _write_labels(tmp_path / "labels.tif", HAND)
    np.testing.assert_array_equal(
        labels_to_embedding_grid(path, back).values, [[10, 30], [LABEL_NODATA, 40]]
    )


def test_bad_inputs_are_named(tmp_path):
    path = _write_labels(tmp_path / "labels.tif", HAND)
    with pytest.raises(ValueError, match="multiple of stride"):
        labels_to_embedding_grid(path, _embedding_cube(2, tile=5, stride=2))
    lab = xr.DataArray(HAND, dims=("y", "x"))
    with pytest.raises(ValueError, match="CRS"):
        labels_to_embedding_grid(lab, _embedding_cube(2, tile=4, stride=4))
