"""numba per-tile statistics against plain numpy references, on numpy and dask inputs."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rioxarray
import xarray as xr

from tests.helpers.counting import raise_if_dask_computes
from xterrafm.datasets import SyntheticScene
from xterrafm.tilestats import class_histogram, n_tiles, valid_fraction
from xterrafm.worldcover import WORLDCOVER_CLASSES

WORLDCOVER_VALUES = tuple(WORLDCOVER_CLASSES)


def _ref_valid_fraction(valid: np.ndarray, tile: int) -> np.ndarray:
    """Plain numpy: fraction of True per tile over each tile's real area; valid is (..., y, x)."""
    ny, nx = valid.shape[-2:]
    out = np.zeros((*valid.shape[:-2], n_tiles(ny, tile), n_tiles(nx, tile)))
    for ty in range(out.shape[-2]):
        for tx in range(out.shape[-1]):
            win = valid[..., ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
            out[..., ty, tx] = win.mean(axis=(-2, -1))
    return out


def _ref_histogram(classes: np.ndarray, tile: int, values: tuple[int, ...]) -> np.ndarray:
    ny, nx = classes.shape[-2:]
    out = np.zeros((*classes.shape[:-2], n_tiles(ny, tile), n_tiles(nx, tile), len(values)),
                   dtype=np.int64)
    for ty in range(out.shape[-3]):
        for tx in range(out.shape[-2]):
            win = classes[..., ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
            for k, v in enumerate(values):
                out[..., ty, tx, k] = (win == v).sum(axis=(-2, -1))
    return out


@pytest.fixture()
def nan_cube() -> np.ndarray:
    """(time=2, band=3, y=50, x=37) with scattered NaN, one all-NaN tile and a band-only hole."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 50, 37)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[0, :, :16, :16] = np.nan  # tile (0, 0) of date 0 entirely nodata
    x[1, 2, 16:32, :] = np.nan  # only one band missing: those pixels are invalid
    return x


def test_valid_fraction_numpy_matches_reference(nan_cube: np.ndarray) -> None:
    got = valid_fraction(nan_cube, tile=16)
    expected = _ref_valid_fraction(~np.isnan(nan_cube).any(axis=-3), 16)
    assert got.shape == (2, 4, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got[0, 0, 0] == 0.0  # all-NaN tile
    assert (got[1, 1, :] == 0.0).all()
    # partial edge tile (rows 48..49, cols 32..36 = 10 px) measured over its real area
    edge = ~np.isnan(nan_cube[0, :, 48:, 32:]).any(axis=0)
    assert got[0, 3, 2] == pytest.approx(edge.sum() / 10)


def test_valid_fraction_of_boolean_mask() -> None:
    mask = np.zeros((45, 30), dtype=bool)
    mask[:20, :20] = True
    got = valid_fraction(mask, tile=20)
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    full = valid_fraction(np.ones((45, 30), dtype=bool), tile=20)
    np.testing.assert_array_equal(full, np.ones((3, 2)))  # partial tiles are 1.0, not 0.5


def test_valid_fraction_dask_lazy_and_equal(nan_cube: np.ndarray) -> None:
    darr = da.from_array(nan_cube, chunks=(1, 1, 32, 16))
    with raise_if_dask_computes():
        lazy = valid_fraction(darr, tile=16)
    assert isinstance(lazy, da.Array) and lazy.shape == (2, 4, 3)
    np.testing.assert_allclose(lazy.compute(), valid_fraction(nan_cube, tile=16))
    cube = xr.DataArray(darr, dims=("time", "band", "y", "x"))
    np.testing.assert_allclose(valid_fraction(cube, tile=16).compute(),
                               valid_fraction(nan_cube, tile=16))


def test_misaligned_chunks_raise_or_rechunk(nan_cube: np.ndarray) -> None:
    darr = da.from_array(nan_cube, chunks=(1, 3, 20, 37))
    with pytest.raises(ValueError, match=r"chunks along y \(20, 20, 10\).*tile size 16"):
        valid_fraction(darr, tile=16)
    got = valid_fraction(darr, tile=16, rechunk=True)
    np.testing.assert_allclose(got.compute(), valid_fraction(nan_cube, tile=16))
    lc = da.from_array(np.full((50, 37), 10, dtype=np.uint8), chunks=(25, 37))
    with pytest.raises(ValueError, match="rechunk=True"):
        class_histogram(lc, tile=16)
    assert class_histogram(lc, tile=16, rechunk=True).compute()[..., 0].sum() == 50 * 37


def test_valid_fraction_bad_input() -> None:
    with pytest.raises(ValueError, match="float data with NaN nodata or a boolean mask"):
        valid_fraction(np.zeros((3, 4, 4), dtype=np.int16))
    with pytest.raises(ValueError, match=r"\(\.\.\., band, y, x\)"):
        valid_fraction(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="tile"):
        valid_fraction(np.zeros((1, 4, 4), dtype=np.float32), tile=0)


def test_class_histogram_matches_reference() -> None:
    rng = np.random.default_rng(1)
    choices = np.array([0, *WORLDCOVER_VALUES, 255], dtype=np.uint8)
    lc = rng.choice(choices, size=(2, 70, 45)).astype(np.uint8)
    got = class_histogram(lc, tile=32)
    assert got.shape == (2, 3, 2, 11) and got.dtype == np.int64
    np.testing.assert_array_equal(got, _ref_histogram(lc, 32, WORLDCOVER_VALUES))
    # 0 and 255 are not counted: totals are below the tile areas
    assert (got.sum(-1) <= 32 * 32).all()
    assert got[0, 2, 1].sum() == ((lc[0, 64:, 32:] != 0) & (lc[0, 64:, 32:] != 255)).sum()
    # float classes with NaN nodata (as read through odc-stac) give the same counts
    lcf = lc.astype(np.float32)
    lcf[lc == 0] = np.nan
    np.testing.assert_array_equal(class_histogram(lcf, tile=32), got)
    # custom bins
    custom = class_histogram(lc, tile=32, values=(80, 10))
    np.testing.assert_array_equal(custom, got[..., [7, 0]])
    with pytest.raises(ValueError, match="1..255"):
        class_histogram(lc, values=(0, 10))


def test_class_histogram_dask_on_synthetic_landcover(synthetic_scene: SyntheticScene) -> None:
    lc = rioxarray.open_rasterio(synthetic_scene.landcover_path, chunks={"y": 224, "x": 224})
    lc = lc.squeeze("band", drop=True)
    with raise_if_dask_computes():
        lazy = class_histogram(lc, tile=224)
    got = lazy.compute()
    ref = _ref_histogram(synthetic_scene.landcover, 224, WORLDCOVER_VALUES)
    np.testing.assert_array_equal(got, ref)
    assert got.shape == (2, 2, 11)
    assert (got.sum(-1) == 224 * 224).all()  # every pixel carries a class
    assert ((got > 0).sum(-1) >= 3).all()  # 224 px windows mix several classes


def test_valid_fraction_on_synthetic_s2_wedge(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    layers = [rioxarray.open_rasterio(s.band_paths["s2_l2a"][1][b], chunks={"y": 224, "x": 224},
                                      masked=True).squeeze("band", drop=True)
              for b in ("B02", "B03", "B04", "B08")]
    cube = xr.concat(layers, dim="band")
    frac = valid_fraction(cube, tile=32).compute()
    expected = _ref_valid_fraction(~s.nodata_masks["s2_l2a"][1], 32)
    np.testing.assert_allclose(frac, expected)
    assert frac[0, 0] == 0.0 and frac[-1, -1] == 1.0
