"""load_stac on real catalogs' item JSON (tests/data/stac) with pixels on each item's own grid:
values, Sentinel-1 products, decibels and several CRSs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from tests.helpers.stac_fixtures import ITEMS, localize, read_item
from xterrafm.errors import InputError, UsageError
from xterrafm.io.stac import load_stac, load_stac_per_crs
from xterrafm.io.stac_calibration import band_calibration, check_s1_products

S2_ITEMS = [n for n, (_, m) in ITEMS.items() if m.startswith("s2")]


def _written(local, band: str, cube) -> tuple[np.ndarray, np.ndarray]:
    """The file's values on the cube's grid (nearest), and its calibration applied."""
    from rasterio.warp import Resampling, reproject

    asset = local.item.assets[local.asset_keys[band]]
    gbox = cube.odc.geobox
    with rasterio.open(asset.href) as src:
        dst = np.zeros(gbox.shape, src.dtypes[0])
        reproject(rasterio.band(src, 1), dst, dst_transform=gbox.affine, dst_crs=gbox.crs.to_wkt(),
                  resampling=Resampling.nearest, src_nodata=src.nodata, dst_nodata=src.nodata)
        nodata = src.nodata
    return dst, np.asarray(nodata)


@pytest.mark.parametrize("name", S2_ITEMS)
def test_sentinel2_items_load_in_physical_units(tmp_path, name):
    local = localize(name, tmp_path)
    cube = load_stac([local.item], modality=local.modality, bbox=local.bbox,
                     resampling="nearest", chunks={"y": 64, "x": 64})
    assert cube.dims == ("time", "band", "y", "x") and cube.sizes["y"] > 100
    from xterrafm.bands import get_modality

    spec = get_modality(local.modality)
    for band in ("B02", "B05", "B09"):  # 10, 20 and 60 m
        dn, nodata = _written(local, band, cube)
        cal = band_calibration(local.item, local.item.assets[local.asset_keys[band]], spec)
        want = np.where(dn == nodata, np.nan, dn.astype("float32") * np.float32(cal.scale)
                        + np.float32(cal.offset))
        got = cube.sel(band=band).isel(time=0).values
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-6)
    values = cube.values[np.isfinite(cube.values)]
    assert 0.0 < np.median(values) < 0.5  # reflectance, not DN


def test_sentinel1_rtc_item_loads_linear_gamma0(tmp_path):
    local = localize("stactools-s1-rtc", tmp_path)
    cube = load_stac([local.item], modality="s1", bbox=local.bbox, resolution=20,
                     resampling="nearest")
    assert list(cube.band.values) == ["VV", "VH"]
    dn, nodata = _written(local, "VV", cube)
    got = cube.sel(band="VV").isel(time=0).values
    np.testing.assert_array_equal(np.isnan(got), dn == nodata)  # nodata 0 -> NaN
    np.testing.assert_array_equal(got[dn != nodata], dn[dn != nodata])


def test_sentinel1_db_assets_become_linear_power(tmp_path):
    linear = localize("stactools-s1-rtc", tmp_path / "lin", seed=3)
    db = localize("stactools-s1-rtc", tmp_path / "db", seed=3, units="dB")
    a = load_stac([linear.item], modality="s1", bbox=linear.bbox, resolution=20,
                  resampling="nearest").values
    b = load_stac([db.item], modality="s1", bbox=db.bbox, resolution=20,
                  resampling="nearest")
    assert b.attrs["db_to_linear"] == ["VV", "VH"]
    np.testing.assert_allclose(b.values, a, rtol=1e-5)


def test_sentinel1_grd_item_is_refused_saying_how_to_get_rtc():
    grd = read_item("stactools-s1-grd")
    with pytest.raises(InputError) as info:
        load_stac([grd], modality="s1")
    msg = str(info.value)
    for part in (grd.id, "GRD", "radar geometry", "RTC", "sentinel-1-rtc", "EPSG:4326"):
        assert part in msg
    check_s1_products([read_item("stactools-s1-rtc")])  # RTC passes


def test_items_on_two_crss_are_refused_or_loaded_one_cube_per_crs(tmp_path):
    a = localize("planetary-computer-l2a", tmp_path / "a")  # EPSG:32606
    b = localize("earth-search-v0-l2a", tmp_path / "b")  # EPSG:32628
    with pytest.raises(UsageError) as info:
        load_stac([a.item, b.item], modality="s2_l2a")
    assert "EPSG:32606: 1 item(s)" in str(info.value)
    assert "EPSG:32628: 1 item(s)" in str(info.value)
    assert "load_stac_per_crs" in str(info.value)
    cubes = load_stac_per_crs([a.item, b.item], modality="s2_l2a", chunks={"y": 256, "x": 256})
    assert list(cubes) == ["EPSG:32606", "EPSG:32628"]
    for crs, cube in cubes.items():
        assert cube.odc.geobox.crs.epsg == int(crs.split(":")[1])
        assert cube.sizes["y"] == 10980 and cube.sizes["x"] == 10980  # each on its own grid
    # reprojecting into one CRS is still possible when asked for
    one = load_stac([a.item], modality="s2_l2a", bbox=a.bbox, crs="EPSG:32606")
    assert one.odc.geobox.crs.epsg == 32606
    with pytest.raises(UsageError, match="crs= is not taken"):
        load_stac_per_crs([a.item], modality="s2_l2a", crs="EPSG:4326")
