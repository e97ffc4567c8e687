"""Normalisation specs, normalize() on numpy/torch/xarray, and compute_stats() with dask."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rioxarray
import torch
import xarray as xr

import xterrafm
from tests.helpers.counting import raise_if_dask_computes
from xterrafm.bands import band_names
from xterrafm.datasets import SyntheticScene
from xterrafm.normalization import (
    available_specs,
    compute_stats,
    load_spec,
    normalize,
    save_spec,
)

torch.set_num_threads(1)


def _reference(x: np.ndarray, modality: str) -> np.ndarray:
    e = load_spec("terrafm-v1")["modalities"][modality]
    a = x.astype(np.float64)
    if modality == "s1":
        a = 10 * np.log10(np.maximum(a, 1e-6))
    return (a - np.array(e["mean"])[:, None, None]) / np.array(e["std"])[:, None, None]


def _reflectance(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.uniform(0.0, 0.6, size=shape).astype(np.float32)
    x[..., 0, 0, 0] = np.nan
    return x


def test_shipped_spec_cites_its_source_and_converts_to_reflectance() -> None:
    assert "terrafm-v1" in available_specs()
    spec = load_spec("terrafm-v1")
    assert spec["name"] == "terrafm-v1"
    assert "SSL4EO-S12" in spec["source"]["citation"]
    assert spec["source"]["url"].startswith("https://github.com/zhu-xlab/SSL4EO-S12/blob/")
    assert "10000" in spec["conversion"] and "B10" in spec["conversion"]
    for mod in ("s1", "s2_l1c", "s2_l2a"):
        assert spec["modalities"][mod]["bands"] == band_names(mod)
    l2a = spec["modalities"]["s2_l2a"]
    # published S2A_MEAN[1] = 884.29673756 DN (B02) -> reflectance
    assert l2a["mean"][1] == pytest.approx(884.29673756 / 10000, rel=1e-8)
    l1c = spec["modalities"]["s2_l1c"]
    # B11 of L1C follows the dropped B10: published S2C_MEAN[11] = 2177.07172323
    assert l1c["mean"][10] == pytest.approx(2177.07172323 / 10000, rel=1e-8)
    assert spec["modalities"]["s1"]["mean"] == pytest.approx([-12.54847273, -20.19237134])
    assert spec["modalities"]["s1"]["transform"] == "10log10"


@pytest.mark.parametrize("modality", ["s2_l2a", "s2_l1c"])
def test_numpy_s2(modality: str) -> None:
    x = _reflectance(np.random.default_rng(0), (2, 12, 5, 6))
    y = normalize(x, modality)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, _reference(x, modality), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    y64 = normalize(x.astype(np.float64), modality)
    assert y64.dtype == np.float64
    # integers (e.g. reflectance*10000 mistakenly passed) still give float32, not silent ints
    assert normalize(np.ones((12, 2, 2), dtype=np.int16), modality).dtype == np.float32


def test_numpy_s1_log_then_standardise() -> None:
    spec = load_spec()["modalities"]["s1"]
    x = np.empty((2, 1, 3), dtype=np.float32)
    x[:, 0, 0] = 10 ** (np.array(spec["mean"]) / 10)  # exactly the mean in dB -> 0
    x[:, 0, 1] = np.nan
    x[:, 0, 2] = 0.0  # non-physical zero power: floored, stays finite
    y = normalize(x, "s1")
    np.testing.assert_allclose(y[:, 0, 0], 0.0, atol=1e-5)
    assert np.isnan(y[:, 0, 1]).all()
    assert np.isfinite(y[:, 0, 2]).all()
    np.testing.assert_allclose(y, _reference(x, "s1"), rtol=1e-5, atol=1e-5)


def test_torch_matches_numpy_and_keeps_dtype() -> None:
    x = _reflectance(np.random.default_rng(1), (3, 12, 4, 4))
    t = torch.from_numpy(x)
    y = normalize(t, "s2_l2a")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), normalize(x, "s2_l2a"), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(torch.isnan(y).numpy(), np.isnan(x))
    assert int(torch.isnan(y).sum()) == 3
    assert normalize(t.double(), "s2_l2a").dtype == torch.float64
    half = normalize(t.half(), "s2_l2a")
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half.float().numpy(), y.numpy(), rtol=1e-2, atol=1e-2)
    s1 = torch.rand(2, 2, 3, 3) * 0.2
    s1[0, 1, 0, 0] = float("nan")
    ys1 = normalize(s1, "s1")
    np.testing.assert_allclose(ys1.numpy(), _reference(s1.numpy(), "s1"), rtol=1e-5, atol=1e-5)
    assert torch.isnan(ys1[0, 1, 0, 0])


def _cube(x: np.ndarray, modality: str, chunks: dict | None = None) -> xr.DataArray:
    arr = xr.DataArray(x, dims=("time", "band", "y", "x"),
                       coords={"band": band_names(modality)}, attrs={"modality": modality})
    return arr.chunk(chunks) if chunks else arr


def test_xarray_dask_stays_lazy_and_matches_numpy() -> None:
    x = _reflectance(np.random.default_rng(2), (2, 12, 16, 16))
    cube = _cube(x, "s2_l2a", {"time": 1, "y": 8, "x": 8})
    with raise_if_dask_computes():
        y = normalize(cube, "s2_l2a")
    assert isinstance(y.data, da.Array)
    assert y.dims == cube.dims and y.dtype == np.float32
    assert y.attrs["normalization"] == "terrafm-v1" and y.attrs["modality"] == "s2_l2a"
    np.testing.assert_allclose(y.values, normalize(x, "s2_l2a"), rtol=1e-6, atol=1e-6)
    # band dim last, labels permuted and given as aliases (Earth Search keys)
    perm = cube.isel(band=[3, 1, 2, 0, 4, 5, 6, 7, 8, 9, 10, 11]).transpose("time", "y", "x", "band")
    aliases = ["red", "blue", "green", "coastal", "rededge1", "rededge2", "rededge3", "nir",
               "nir08", "nir09", "swir16", "swir22"]
    perm = perm.assign_coords(band=aliases)
    yp = normalize(perm, "s2_l2a")
    assert yp.dims == ("time", "y", "x", "band")
    yp = yp.assign_coords(band=perm.band.values)
    np.testing.assert_allclose(
        yp.transpose("time", "band", "y", "x").values,
        y.isel(band=[3, 1, 2, 0, 4, 5, 6, 7, 8, 9, 10, 11]).values, rtol=1e-6, atol=1e-6)


def test_dask_array_input_stays_lazy() -> None:
    x = _reflectance(np.random.default_rng(3), (2, 12, 8, 8))
    with raise_if_dask_computes():
        y = normalize(da.from_array(x, chunks=(1, 12, 4, 4)), "s2_l1c")
    assert isinstance(y, da.Array)
    np.testing.assert_allclose(y.compute(), normalize(x, "s2_l1c"), rtol=1e-6)


def test_errors_name_the_problem(tmp_path: Path) -> None:
    x = np.zeros((12, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="terrafm-v9"):
        normalize(x, "s2_l2a", spec="terrafm-v9")
    with pytest.raises(ValueError, match="unknown modality 's3'"):
        normalize(x, "s3")
    with pytest.raises(ValueError, match="expects 2 bands"):
        normalize(x, "s1")
    with pytest.raises(ValueError, match="expects 12 bands"):
        normalize(torch.zeros(1, 13, 4, 4), "s2_l2a")
    with pytest.raises(ValueError, match="axis -3"):
        normalize(np.zeros((12, 4)), "s2_l2a")
    with pytest.raises(ValueError, match="expects 12 bands on dim 'band'"):
        normalize(xr.DataArray(np.zeros((3, 2, 2)), dims=("band", "y", "x")), "s2_l2a")
    with pytest.raises(ValueError, match="'band' dim"):
        normalize(xr.DataArray(np.zeros((12, 2, 2)), dims=("c", "y", "x")), "s2_l2a")
    bad = _cube(np.zeros((1, 12, 2, 2)), "s2_l2a").assign_coords(
        band=["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "XX"])
    with pytest.raises(ValueError, match="'XX'"):
        normalize(bad, "s2_l2a")
    only_s1 = {"name": "mine", "modalities": {"s1": {"bands": ["VV", "VH"], "mean": [0, 0],
                                                     "std": [1, 1]}}}
    with pytest.raises(ValueError, match="no statistics for modality 's2_l2a'"):
        normalize(x, "s2_l2a", spec=only_s1)
    with pytest.raises(ValueError, match="positive"):
        normalize(x[:2], "s1", spec={"modalities": {"s1": {"bands": ["VV", "VH"],
                                                           "mean": [0, 0], "std": [1, 0]}}})
    with pytest.raises(ValueError, match="does not exist"):
        normalize(x, "s2_l2a", spec=tmp_path / "missing.json")


def test_compute_stats_with_dask_roundtrips_through_normalize(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    true_mean = np.linspace(0.05, 0.4, 12)
    true_std = np.linspace(0.01, 0.1, 12)
    x = (true_mean[None, :, None, None]
         + true_std[None, :, None, None] * rng.standard_normal((3, 12, 32, 32)))
    x[0, :, :4, :] = np.nan
    cube = _cube(x.astype(np.float32), "s2_l2a", {"time": 1, "y": 16, "x": 16})
    with raise_if_dask_computes(max_computes=1):
        spec = compute_stats(cube, "s2_l2a", name="mine")
    e = spec["modalities"]["s2_l2a"]
    assert e["bands"] == band_names("s2_l2a")
    np.testing.assert_allclose(e["mean"], np.nanmean(x, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(e["std"], np.nanstd(x, axis=(0, 2, 3)), rtol=1e-4)
    assert e["count"] == [3 * 32 * 32 - 4 * 32] * 12
    z = normalize(cube, "s2_l2a", spec=spec)
    assert z.attrs["normalization"] == "mine"
    zm = z.mean(dim=("time", "y", "x")).values
    zs = z.std(dim=("time", "y", "x")).values
    np.testing.assert_allclose(zm, 0.0, atol=1e-5)
    np.testing.assert_allclose(zs, 1.0, atol=1e-4)
    path = save_spec(spec, tmp_path / "mine.json")
    assert json.loads(path.read_text())["modalities"]["s2_l2a"]["mean"] == e["mean"]
    np.testing.assert_allclose(normalize(cube, "s2_l2a", spec=path).values, z.values)
    np.testing.assert_allclose(normalize(cube, "s2_l2a", spec=str(path)).values, z.values)


def test_compute_stats_errors() -> None:
    cube = _cube(np.full((1, 2, 4, 4), np.nan, dtype=np.float32), "s1")
    with pytest.raises(ValueError, match="band 'VV' .* no valid pixel"):
        compute_stats(cube, "s1")
    const = _cube(np.ones((1, 2, 4, 4), dtype=np.float32), "s1")
    with pytest.raises(ValueError, match="zero variance"):
        compute_stats(const, "s1")
    with pytest.raises(ValueError, match="expects 2 bands"):
        compute_stats(np.ones((3, 4, 4)), "s1")


def test_compute_stats_on_synthetic_s1_cogs(synthetic_scene: SyntheticScene) -> None:
    paths = synthetic_scene.band_paths["s1"][1]
    layers = [rioxarray.open_rasterio(paths[b], chunks={"x": 224, "y": 224}, masked=True)
              .squeeze("band", drop=True) for b in ("VH", "VV")]
    cube = xr.concat(layers, dim="band").assign_coords(band=["vh", "vv"])  # reversed, aliases
    spec = compute_stats(cube, "s1")
    e = spec["modalities"]["s1"]
    vv = rioxarray.open_rasterio(paths["VV"]).values[0]
    db = 10 * np.log10(vv[~np.isnan(vv)])
    assert e["bands"] == ["VV", "VH"] and e["transform"] == "10log10"
    assert e["mean"][0] == pytest.approx(db.mean(), rel=1e-6)
    assert e["std"][0] == pytest.approx(db.std(), rel=1e-5)
    assert e["count"][0] == db.size < vv.size  # the swath-edge NaN strip is excluded
    assert e["mean"][1] < e["mean"][0]  # VH is darker than VV


def test_reachable_from_package() -> None:
    assert xterrafm.normalize is normalize
    assert xterrafm.normalize.compute_stats is compute_stats
    assert xterrafm.compute_stats is compute_stats
