"""The synthetic scene generator: contract, files, STAC metadata, determinism, separability."""

from __future__ import annotations

import itertools
import json
from datetime import timezone
from pathlib import Path

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio

from xterrafm.bands import S1, S2_L2A
from xterrafm.datasets import (
    PROCESSING_BASELINE,
    S2_DN_OFFSET,
    SyntheticScene,
    make_synthetic_scene,
)
from xterrafm.datasets.signatures import SCL_OF_CLASS
from xterrafm.worldcover import WORLDCOVER_CLASSES

IC_KEYS = {"s2_l2a", "s2_l2a_earthsearch", "s2_l1c", "s1", "landcover"}


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1), {"crs": ds.crs, "transform": ds.transform, "nodata": ds.nodata,
                            "dtype": ds.dtypes[0], "shape": ds.shape, "blocks": ds.block_shapes,
                            "layout": ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
                            "overviews": ds.overviews(1)}


def _interior(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood lies entirely inside ``mask``."""
    p = np.pad(mask, r, constant_values=False)
    win = np.lib.stride_tricks.sliding_window_view(p, (2 * r + 1, 2 * r + 1))
    return win.all(axis=(-2, -1))


def test_contract_fields(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    assert isinstance(s.root, Path) and s.root.is_dir()
    assert s.crs == "EPSG:32632"
    assert tuple(s.geobox.shape) == (448, 448) and (s.height, s.width) == (448, 448)
    assert s.geobox.resolution.x == 10 and s.geobox.resolution.y == -10
    assert str(s.geobox.crs) == s.crs
    assert len(s.dates) == 2 and all(d.tzinfo == timezone.utc for d in s.dates)
    assert s.dates[0] < s.dates[1]
    assert s.modalities == ("s2_l2a", "s2_l1c", "s1")
    assert set(s.item_collections) == IC_KEYS
    assert all(p.is_file() for p in s.item_collections.values())
    assert s.catalog.is_file() and s.catalog.name == "catalog.json"
    assert s.landcover.shape == (448, 448) and s.landcover.dtype == np.uint8
    assert set(np.unique(s.landcover)) <= set(WORLDCOVER_CLASSES)
    assert len(s.classes) >= 6
    for m in s.modalities:
        assert set(s.band_paths[m]) == {0, 1}
        names = S1.band_names if m == "s1" else S2_L2A.band_names
        assert list(s.band_paths[m][0]) == names
    assert set(s.scl_paths) == {0, 1}
    assert s.nodata_date == 1
    assert s.processing_baseline == PROCESSING_BASELINE


def test_landcover_regions_mix_in_windows_and_are_pure_in_patches(
    synthetic_scene: SyntheticScene,
) -> None:
    lc = synthetic_scene.landcover
    windows = lc.reshape(2, 224, 2, 224).transpose(0, 2, 1, 3).reshape(4, -1)
    assert all(len(np.unique(w)) >= 3 for w in windows)
    patches = lc.reshape(28, 16, 28, 16).transpose(0, 2, 1, 3).reshape(-1, 256)
    purity = np.array([np.bincount(p).max() / 256 for p in patches])
    assert np.median(purity) > 0.9
    lc_file, meta = _read(synthetic_scene.landcover_path)
    np.testing.assert_array_equal(lc_file, lc)
    assert meta["dtype"] == "uint8" and meta["nodata"] == 0


def test_cogs_crs_grid_dtype_nodata(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    for m in ("s2_l2a", "s2_l1c"):
        for d in (0, 1):
            for spec in S2_L2A.bands:
                data, meta = _read(s.band_paths[m][d][spec.name])
                f = int(spec.resolution // 10)
                assert meta["shape"] == (-(-448 // f), -(-448 // f))
                assert meta["crs"].to_epsg() == 32632
                assert tuple(meta["transform"])[:6] == (spec.resolution, 0, 600000, 0,
                                                        -spec.resolution, 5100000)
                assert meta["dtype"] == "uint16" and meta["nodata"] == 0
                assert meta["layout"] == "COG"
                assert meta["blocks"][0] == (256, 256) or data.shape[0] < 256
                if spec.resolution == 10:
                    assert meta["overviews"], "448 px COG should carry an overview"
                    np.testing.assert_array_equal(data == 0, s.nodata_masks[m][d])
                if d == 0:
                    assert (data > 0).all()
                else:
                    assert 0.05 < (data == 0).mean() < 0.25  # orbit-edge wedge
                # DN carry the +1000 offset: reflectances are positive.
                assert np.median(data[data > 0]) > S2_DN_OFFSET
    for d in (0, 1):
        for spec in S1.bands:
            data, meta = _read(s.band_paths["s1"][d][spec.name])
            assert meta["dtype"] == "float32" and np.isnan(meta["nodata"])
            assert meta["shape"] == (448, 448) and meta["crs"].to_epsg() == 32632
            np.testing.assert_array_equal(np.isnan(data), s.nodata_masks["s1"][d])
            assert (data[~np.isnan(data)] > 0).all()
    assert not s.nodata_masks["s1"][0].any() and s.nodata_masks["s1"][1].any()


def test_scl_follows_landcover_with_clouds_and_nodata(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    lc20 = s.landcover[::2, ::2]
    expected = np.vectorize(SCL_OF_CLASS.get)(lc20)
    for d in (0, 1):
        scl, meta = _read(s.scl_paths[d])
        assert meta["dtype"] == "uint8" and meta["shape"] == (224, 224) and meta["nodata"] == 0
        cloud = np.isin(scl, (8, 9))
        assert 0 < cloud.mean() < 0.05
        np.testing.assert_array_equal(cloud, s.cloud_masks[d][::2, ::2] & (scl != 0))
        clear = ~cloud & (scl != 0)
        np.testing.assert_array_equal(scl[clear], expected[clear])
        assert ((scl == 0).any()) == (d == s.nodata_date)
        # clouds are bright in the blue band
        b02, _ = _read(s.band_paths["s2_l2a"][d]["B02"])
        assert b02[s.cloud_masks[d]].mean() > b02[~s.cloud_masks[d] & (b02 > 0)].mean() + 1000


def test_l1c_is_toa_brighter_in_blue(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    l2a, _ = _read(s.band_paths["s2_l2a"][0]["B02"])
    l1c, _ = _read(s.band_paths["s2_l1c"][0]["B02"])
    diff = l1c.astype(float) - l2a.astype(float)
    assert 400 < diff.mean() < 1200  # path-radiance-like offset of a few hundredths
    assert not np.array_equal(l1c, l2a)


def _s2_reflectance(scene: SyntheticScene, d: int) -> np.ndarray:
    """(height, width, 12) reflectance with 20/60 m bands repeated onto the 10 m grid."""
    out = []
    for spec in S2_L2A.bands:
        f = int(spec.resolution // 10)
        dn, _ = _read(scene.band_paths["s2_l2a"][d][spec.name])
        full = np.repeat(np.repeat(dn, f, 0), f, 1)[: scene.height, : scene.width]
        out.append((full.astype(np.float64) - S2_DN_OFFSET) / 10000)
    return np.stack(out, -1)


def test_classes_are_spectrally_separable(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    x = _s2_reflectance(s, 0)
    clear = ~s.cloud_masks[0] & ~s.nodata_masks["s2_l2a"][0]
    stats = {}
    for c in s.classes:
        m = _interior(s.landcover == c, 4) & clear
        if m.sum() >= 200:
            stats[c] = (x[m].mean(0), np.linalg.norm(x[m].std(0)))
    assert len(stats) >= 6
    for (a, (ma, sa)), (b, (mb, sb)) in itertools.combinations(stats.items(), 2):
        assert np.linalg.norm(ma - mb) > 2.5 * max(sa, sb), (a, b)
    # S1: water is darkest, built-up brightest in VV
    vv, _ = _read(s.band_paths["s1"][0]["VV"])
    mean_db = {c: 10 * np.log10(vv[s.landcover == c].mean()) for c in s.classes}
    if 80 in mean_db:
        assert min(mean_db, key=mean_db.get) == 80
    if 50 in mean_db:
        assert max(mean_db, key=mean_db.get) == 50


def _pixels(scene: SyntheticScene) -> dict[str, np.ndarray]:
    out = {"landcover": _read(scene.landcover_path)[0]}
    for m, per_date in scene.band_paths.items():
        for d, bands in per_date.items():
            for b, p in bands.items():
                out[f"{m}/{d}/{b}"] = _read(p)[0]
    for d, p in scene.scl_paths.items():
        out[f"scl/{d}"] = _read(p)[0]
    return out


def test_deterministic_by_seed(tmp_path: Path) -> None:
    kw = dict(width=96, height=80, n_dates=2)
    a = _pixels(make_synthetic_scene(tmp_path / "a", seed=3, **kw))
    b = _pixels(make_synthetic_scene(tmp_path / "b", seed=3, **kw))
    c = _pixels(make_synthetic_scene(tmp_path / "c", seed=4, **kw))
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["landcover"], c["landcover"])
    assert not np.array_equal(a["s2_l2a/0/B04"], c["s2_l2a/0/B04"])
    # odd sizes: 20/60 m grids cover the 10 m grid
    assert a["s2_l2a/0/B01"].shape == (14, 16) and a["s2_l2a/0/B05"].shape == (40, 48)


def _all_assets_of_json(path: Path) -> list[str]:
    d = json.loads(path.read_text())
    feats = d.get("features", [d])
    return [a["href"] for f in feats for a in f.get("assets", {}).values()]


def test_static_catalog_is_readable_with_relative_hrefs(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    cat = pystac.Catalog.from_file(str(s.catalog))
    colls = {c.id: c for c in cat.get_children()}
    assert set(colls) == {"sentinel-2-l2a", "sentinel-2-l2a-earthsearch", "sentinel-2-l1c",
                          "sentinel-1-rtc", "esa-worldcover"}
    items = list(cat.get_items(recursive=True))
    assert len(items) == 4 * 2 + 1
    for it in items:
        on_disk = Path(it.get_self_href())
        for href in _all_assets_of_json(on_disk):
            assert not href.startswith("/") and "://" not in href, href
        for asset in it.assets.values():
            assert Path(asset.get_absolute_href()).is_file()
    for key, ic_path in s.item_collections.items():
        ic = pystac.ItemCollection.from_file(str(ic_path))
        assert [it.id for it in ic] == s.item_ids[key]
        for href in _all_assets_of_json(ic_path):
            assert not Path(href).is_absolute()
            assert (ic_path.parent / href).resolve().is_file(), href


def test_stac_extensions_and_naming_styles(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene

    def items(key: str) -> list[pystac.Item]:
        return list(pystac.ItemCollection.from_file(str(s.item_collections[key])))

    pc, es, l1c, s1 = items("s2_l2a"), items("s2_l2a_earthsearch"), items("s2_l1c"), items("s1")
    for it in pc + es + l1c:
        assert it.properties["s2:processing_baseline"] == PROCESSING_BASELINE
        assert it.properties["proj:code"] == "EPSG:32632"
        assert any("eo/" in e for e in it.stac_extensions)
        assert any("raster/" in e for e in it.stac_extensions)
        assert any("projection/" in e for e in it.stac_extensions)
    assert [it.datetime for it in pc] == s.dates == [it.datetime for it in s1]
    assert set(pc[0].assets) == set(S2_L2A.band_names) | {"SCL"}
    assert {"blue", "nir08", "coastal", "swir16", "swir22", "scl"} <= set(es[0].assets)
    assert set(s1[0].assets) == {"vv", "vh"}
    b8a = es[0].assets["nir08"].extra_fields
    assert b8a["raster:bands"][0] == {"nodata": 0, "data_type": "uint16", "spatial_resolution": 20.0,
                                      "scale": 0.0001, "offset": -0.1}
    assert b8a["eo:bands"][0]["name"] == "nir08" and b8a["eo:bands"][0]["common_name"] == "nir08"
    assert b8a["proj:shape"] == [224, 224]
    assert b8a["proj:transform"] == [20.0, 0.0, 600000.0, 0.0, -20.0, 5100000.0]
    pc_b02 = pc[0].assets["B02"].extra_fields
    assert "scale" not in pc_b02["raster:bands"][0] and "offset" not in pc_b02["raster:bands"][0]
    assert pc_b02["eo:bands"][0] == {**pc_b02["eo:bands"][0], "name": "B02", "common_name": "blue"}
    assert l1c[0].assets["B02"].extra_fields["raster:bands"][0]["offset"] == -0.1
    assert s1[0].assets["vv"].extra_fields["raster:bands"][0]["nodata"] == "nan"
    assert s1[0].assets["vv"].extra_fields["raster:bands"][0]["data_type"] == "float32"


def test_stac_metadata_matches_pixels_via_odc_stac(synthetic_scene: SyntheticScene) -> None:
    s = synthetic_scene
    ic = pystac.ItemCollection.from_file(str(s.item_collections["s2_l2a_earthsearch"]))
    # ItemCollection hrefs are relative to the JSON file: resolve them as a reader must.
    for it in ic:
        for a in it.assets.values():
            a.href = str((s.item_collections["s2_l2a_earthsearch"].parent / a.href).resolve())
    ds = odc.stac.load(ic, bands=["blue", "nir08"], resolution=20, crs=s.crs)
    assert ds.odc.geobox.shape == (224, 224)
    b8a, _ = _read(s.band_paths["s2_l2a"][0]["B8A"])
    np.testing.assert_array_equal(ds["nir08"].isel(time=0).values, b8a)


def test_refuses_to_overwrite_and_validates_arguments(tmp_path: Path) -> None:
    first = make_synthetic_scene(tmp_path, width=32, height=32, n_dates=1, modalities=("s1",))
    before = first.band_paths["s1"][0]["VV"].read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        make_synthetic_scene(tmp_path, seed=5, width=32, height=32, n_dates=1)
    assert first.band_paths["s1"][0]["VV"].read_bytes() == before
    assert set(first.item_collections) == {"s1", "landcover"}
    with pytest.raises(ValueError, match="unknown modality"):
        make_synthetic_scene(tmp_path / "x", modalities=("s3",))
    with pytest.raises(ValueError, match="metres"):
        make_synthetic_scene(tmp_path / "y", crs="EPSG:4326")
    with pytest.raises(ValueError, match="width"):
        make_synthetic_scene(tmp_path / "z", width=8)
    again = make_synthetic_scene(tmp_path, seed=5, width=32, height=32, n_dates=1,
                                 modalities=("s1",), overwrite=True)
    assert again.band_paths["s1"][0]["VV"].read_bytes() != before
