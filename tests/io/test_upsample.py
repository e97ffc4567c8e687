"""The fast coarse-band read path gives what GDAL's warper gives, and steps aside otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.warp import Resampling, reproject

from xterrafm.io import load_stac
from xterrafm.io.upsample import read_axis_aligned

CRS = "EPSG:32632"
ORIGIN = (500000.0, 5100000.0)


def _write(path, data: np.ndarray, res: float, nodata) -> str:
    h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=1, dtype=data.dtype,
                       crs=CRS, transform=Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]),
                       nodata=nodata, tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data, 1)
    return str(path)


def _source(tmp_path, kind: str) -> str:
    rng = np.random.default_rng(3)
    if kind == "uint16":
        data = rng.integers(1, 12000, size=(90, 70)).astype("uint16")
        data[rng.random(data.shape) < 0.08] = 0  # scattered nodata pixels
        data[40:50, 10:30] = 0  # and a hole
        return _write(tmp_path / "u16.tif", data, 20.0, 0)
    data = rng.random((90, 70)).astype("float32")
    data[rng.random(data.shape) < 0.08] = np.nan
    return _write(tmp_path / "f32.tif", data, 20.0, float("nan"))


def _grids() -> dict[str, GeoBox]:
    x0, y0 = ORIGIN
    return {
        "same extent at 10 m": GeoBox((180, 140), Affine(10, 0, x0, 0, -10, y0), CRS),
        "interior window": GeoBox((57, 33), Affine(10, 0, x0 + 370, 0, -10, y0 - 210), CRS),
        "beyond the edges": GeoBox((200, 170), Affine(10, 0, x0 - 150, 0, -10, y0 + 90), CRS),
        "60 m to 10 m": GeoBox((60, 50), Affine(10, 0, x0 + 600, 0, -10, y0 - 300), CRS),
        "odd factor and shift": GeoBox((70, 61), Affine(7, 0, x0 + 33.5, 0, -7, y0 - 41.25), CRS),
    }


@pytest.mark.parametrize("kind", ["uint16", "float32"])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("grid", list(_grids()))
def test_matches_gdal_warp(tmp_path, kind, method, grid):
    path = _source(tmp_path, kind)
    gb = _grids()[grid]
    if grid == "60 m to 10 m":  # resample the 20 m source to 60 m first: factor 6
        with rasterio.open(path) as r:
            coarse = r.read(1, out_shape=(30, 24), resampling=Resampling.nearest)
        path = _write(tmp_path / "coarse.tif", coarse, 60.0, r.nodata)
    with rasterio.open(path) as src:
        roi, ours = read_axis_aligned(src, 1, gb, method, np.dtype("float32"), src.nodata,
                                      None)
        want = np.full(gb.shape, np.nan, dtype="float32")
        reproject(rasterio.band(src, 1), want, src_nodata=src.nodata, dst_crs=CRS,
                  dst_transform=gb.transform, dst_nodata=np.nan,
                  resampling=getattr(Resampling, method))
    got = np.full(gb.shape, np.nan, dtype="float32")
    got[roi] = ours
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    scale = np.nanmax(np.abs(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
    assert np.isfinite(got).sum() > 0.5 * min(got.size, 90 * 70)


def test_writes_into_given_destination(tmp_path):
    path = _source(tmp_path, "uint16")
    gb = _grids()["beyond the edges"]
    dst = np.full(gb.shape, -1.0, dtype="float32")
    with rasterio.open(path) as src:
        roi, pix = read_axis_aligned(src, 1, gb, "bilinear", np.dtype("float32"), 0, None,
                                     dst=dst)
    assert np.shares_memory(pix, dst)
    assert (roi[0].start, roi[1].start) == (9, 15)  # the source starts 90 m / 150 m inside
    outside = np.ones(gb.shape, bool)
    outside[roi] = False
    assert (dst[outside] == -1).all()  # untouched outside the source


@pytest.mark.parametrize("case", ["other crs", "rotated", "downsampling", "same resolution",
                                  "integer output", "cubic", "band list"])
def test_steps_aside(tmp_path, case):
    path = _source(tmp_path, "uint16")
    x0, y0 = ORIGIN
    gb = GeoBox((50, 50), Affine(10, 0, x0, 0, -10, y0), CRS)
    method, dtype, bidx = "bilinear", np.dtype("float32"), 1
    if case == "other crs":
        gb = GeoBox((50, 50), Affine(10, 0, x0, 0, -10, y0), "EPSG:32633")
    elif case == "rotated":
        gb = GeoBox((50, 50), Affine(10, 0, x0, 0, -10, y0) * Affine.rotation(10), CRS)
    elif case == "downsampling":
        gb = GeoBox((20, 20), Affine(40, 0, x0, 0, -40, y0), CRS)
    elif case == "same resolution":
        gb = GeoBox((20, 20), Affine(20, 0, x0 + 5, 0, -20, y0), CRS)
    elif case == "integer output":
        dtype = np.dtype("uint16")
    elif case == "cubic":
        method = "cubic"
    else:
        bidx = [1]
    with rasterio.open(path) as src:
        assert read_axis_aligned(src, bidx, gb, method, dtype, 0, None) is None


@pytest.mark.parametrize("band", ["B05", "B09"])
def test_load_stac_coarse_band_equals_gdal(synthetic_scene, band):
    """load_stac's bilinear 20/60 m bands equal GDAL's warp of the COG (then calibrated)."""
    sc = synthetic_scene
    got = load_stac(sc.item_collections["s2_l2a"], modality="s2_l2a").isel(time=0)
    got = got.sel(band=band).values
    want = np.full((sc.height, sc.width), np.nan, dtype="float32")
    with rasterio.open(sc.band_paths["s2_l2a"][0][band]) as src:
        reproject(rasterio.band(src, 1), want, src_nodata=0, dst_crs=sc.crs,
                  dst_transform=sc.geobox.transform, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
    want = (want - 1000) * np.float32(1e-4)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_fast_path_decided_from_the_stac_grid(synthetic_scene):
    """Coarse bands with a STAC grid take the fast path; 10 m bands and sources without a
    grid go to odc-loader untouched (so they are not opened twice)."""
    from odc.geo.geobox import GeoBox as _GeoBox
    from odc.loader.types import RasterLoadParams, RasterSource

    from xterrafm.io.upsample import read_source_fast

    sc = synthetic_scene
    cfg = RasterLoadParams(dtype="float32", resampling="bilinear")
    dst = sc.geobox[:224, :224]

    def source(band, with_grid=True):
        path = sc.band_paths["s2_l2a"][0][band]
        with rasterio.open(path) as r:
            grid = _GeoBox(r.shape, r.transform, r.crs)
        return RasterSource(str(path), band=1, geobox=grid if with_grid else None)

    roi, pix = read_source_fast(source("B05"), cfg, dst)
    assert pix.shape == (224, 224) and np.isfinite(pix).any()
    assert read_source_fast(source("B04"), cfg, dst) is None  # same resolution
    assert read_source_fast(source("B05", with_grid=False), cfg, dst) is None
