"""``embed`` / the ``.terrafm`` accessor: laziness, geo-referencing, provenance, correctness.

Correctness is checked against the model run by hand on the same pixels:
``model(xterrafm.normalize(pixels, modality), modality=...)`` (tile level) and
``model.forward_features(...)["patch"]`` (patch level).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xterrafm
from tests.helpers.counting import raise_if_dask_computes
from xterrafm.embedding.windows import AxisWindows
from xterrafm.errors import UsageError


@pytest.fixture(scope="module")
def tiny_model(tiny_weights):
    return xterrafm.load_model("terrafm-tiny", tiny_weights)


def _window(values: np.ndarray, t: int, y0: int, x0: int, tile: int) -> np.ndarray:
    """The (1, C, tile, tile) window at pixel (y0, x0) of date t, NaN-padded past the edge."""
    out = np.full((1, values.shape[1], tile, tile), np.nan, dtype=np.float32)
    part = values[t, :, y0:y0 + tile, x0:x0 + tile]
    out[0, :, :part.shape[1], :part.shape[2]] = part
    return out


def _by_hand(model, window: np.ndarray, modality: str, level: str) -> np.ndarray:
    x = xterrafm.normalize(window, modality)
    x = np.where(np.isfinite(x), x, 0).astype(np.float32)  # the documented fill
    with torch.inference_mode():
        t = torch.from_numpy(x)
        if level == "tile":
            return model(t, modality=modality).numpy()[0]
        return model.forward_features(t, modality=modality)["patch"].numpy()[0]


def test_building_the_graph_computes_nothing(make_cube, tiny_weights):
    # beyond the one bounded sample of the input's values (docs/inputs.md), which
    # calibration="none" (the user vouches for the units) skips
    cube = make_cube(200, 260, chunks=50)
    xterrafm.load_model("terrafm-tiny", tiny_weights)  # warm imports outside the counter
    with raise_if_dask_computes():
        emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, stride=32,
                                 calibration="none")
        emb_p = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64,
                                   level="patch", calibration="none")
    assert emb.chunks is not None and emb_p.chunks is not None
    with raise_if_dask_computes(max_computes=1):  # calibration="auto": the sample only
        emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64)
    assert emb.chunks is not None


def test_output_contract(make_cube, tiny_weights, tiny_model):
    cube = make_cube(200, 260, chunks=50)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, stride=48)
    assert emb.dims == ("time", "embedding", "y", "x")
    assert emb.dtype == np.float32
    assert emb.shape == (2, tiny_model.embed_dim, 4, 6)  # ceil((200-64)/48)+1, ceil((260-64)/48)+1
    assert emb.rio.crs == cube.rio.crs
    assert "spatial_ref" in emb.coords
    # centres of windows in the input CRS: window k covers pixels [48k, 48k+64)
    x_px = cube.x.values
    np.testing.assert_allclose(emb.x.values, x_px[0] + 10 * (np.arange(6) * 48 + 31.5))
    np.testing.assert_allclose(emb.y.values, cube.y.values[0] - 10 * (np.arange(4) * 48 + 31.5))
    np.testing.assert_array_equal(emb.time.values, cube.time.values)
    a = emb.attrs
    assert a["model"] == "terrafm-tiny"
    assert a["weights_sha256"] == tiny_model.weights_sha256
    assert a["modality"] == "s1" and a["bands"] == ["VV", "VH"]
    assert a["normalization"] == "terrafm-v1"
    assert (a["tile"], a["stride"], a["level"]) == (64, 48, "tile")
    assert a["xterrafm_version"] == xterrafm.__version__
    patch = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, level="patch")
    assert patch.shape == (2, tiny_model.embed_dim, 13, 17)  # ceil(200/16), ceil(260/16)
    np.testing.assert_allclose(patch.x.values[:2], x_px[0] - 5 + np.array([80, 240]))


def test_no_time_dimension_and_dataset_input(make_cube, tiny_weights):
    cube = make_cube(128, 128, time=False)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64)
    assert emb.dims == ("embedding", "y", "x")
    ds = cube.to_dataset("band")  # one variable per band, odc-stac style (names lower-cased)
    ds = ds.rename({"VV": "vv", "VH": "vh"})[["vh", "vv"]]
    ds.attrs["modality"] = "s1"
    emb_ds = ds.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64)
    np.testing.assert_allclose(emb_ds.values, emb.values, atol=1e-6)


@pytest.mark.parametrize("level,tile,stride,chunks", [
    ("tile", 64, 64, 50),    # windows straddle input chunks
    ("tile", 64, 32, 50),    # overlapping windows across chunk boundaries (halo)
    ("tile", 64, 48, 200),
    ("patch", 64, 64, 50),
    ("patch", 64, 32, 40),
    ("patch", 96, 32, 70),
])
def test_embedding_equals_model_by_hand(make_cube, tiny_weights, tiny_model, level, tile,
                                        stride, chunks):
    h, w = 190, 230
    cube = make_cube(h, w, chunks=chunks, nan_box=(0, 50, 0, 50))
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=tile,
                             stride=stride, level=level, block_cells=3 if level == "tile" else 5,
                             min_valid=0.5)
    values = cube.values
    got = emb.compute(scheduler="threads").values
    ya, xa = AxisWindows(h, tile, stride, level), AxisWindows(w, tile, stride, level)
    checked = 0
    for t in range(values.shape[0]):
        for ky in range(ya.n_windows):
            for kx in range(xa.n_windows):
                win = _window(values, t, ky * stride, kx * stride, tile)
                valid = np.isfinite(win).all(axis=1)[0]
                if level == "tile":
                    if valid.mean() < 0.5:
                        assert np.isnan(got[t, :, ky, kx]).all()
                        continue
                    ref = _by_hand(tiny_model, win, "s1", level)
                    np.testing.assert_allclose(got[t, :, ky, kx], ref, atol=1e-4, rtol=0)
                    checked += 1
                else:
                    oy_k, oy_off = ya.owner(np.arange(ya.n_out))
                    ox_k, ox_off = xa.owner(np.arange(xa.n_out))
                    rows, cols = np.nonzero(oy_k == ky)[0], np.nonzero(ox_k == kx)[0]
                    ref = _by_hand(tiny_model, win, "s1", level)
                    ref = ref[:, oy_off[rows]][:, :, ox_off[cols]]
                    sub = got[t][:, rows][:, :, cols]
                    pv = valid.reshape(tile // 16, 16, tile // 16, 16).mean(axis=(1, 3))
                    keep = pv[oy_off[rows]][:, ox_off[cols]] >= 0.5
                    assert np.isnan(sub[:, ~keep]).all()
                    np.testing.assert_allclose(sub[:, keep], ref[:, keep], atol=1e-4, rtol=0)
                    checked += int(keep.sum())
    assert checked > 0
    if level == "tile":  # the window over the NaN box (below min_valid) is NaN, others finite
        assert np.isnan(got[:, :, 0, 0]).all()


def test_patch_level_follows_the_model_patch_size(make_cube):
    """terrafm-tiny-p8 (the tiny pretraining recipe's encoder): one output cell per 8 px patch,
    each equal to that patch's token of the model run by hand, NaN where the patch is invalid."""
    model = xterrafm.load_model("terrafm-tiny-p8", seed=4)
    h, w, tile, p = 64, 96, 32, 8
    cube = make_cube(h, w, chunks=48, n_dates=1, nan_box=(0, 12, 0, 12))
    emb = cube.terrafm.embed(model="terrafm-tiny-p8", seed=4, tile=tile, level="patch",
                             min_valid=0.5)
    assert emb.shape == (1, model.embed_dim, h // p, w // p)
    np.testing.assert_allclose(np.diff(emb.x.values), 10 * p)  # 10 m pixels: 80 m cells
    got = emb.compute(scheduler="threads").values[0]
    values = cube.values
    for ky in range(h // tile):
        for kx in range(w // tile):
            win = _window(values, 0, ky * tile, kx * tile, tile)
            ref = _by_hand(model, win, "s1", "patch")
            sub = got[:, ky * tile // p:(ky + 1) * tile // p, kx * tile // p:(kx + 1) * tile // p]
            valid = np.isfinite(win).all(axis=1)[0]
            keep = valid.reshape(tile // p, p, tile // p, p).mean(axis=(1, 3)) >= 0.5
            assert np.isnan(sub[:, ~keep]).all()
            np.testing.assert_allclose(sub[:, keep], ref[:, keep], atol=1e-4, rtol=0)
    assert np.isnan(got[:, 0, 0]).all() and np.isfinite(got[:, 1, 1]).all()


def test_window_sizes_are_checked_against_the_model_patch_size(make_cube):
    """An 8 px model takes 24 px windows and 8 px patch-level strides, which a 16 px model
    refuses; sizes that fit no patch are refused naming the model's patch size."""
    model = xterrafm.load_model("terrafm-tiny-p8", seed=2)
    cube = make_cube(48, 48, chunks=48, n_dates=1)
    emb = cube.terrafm.embed(model="terrafm-tiny-p8", seed=2, tile=24)
    assert emb.shape == (1, model.embed_dim, 2, 2)
    got = emb.compute(scheduler="threads").values[0]
    ref = _by_hand(model, _window(cube.values, 0, 24, 0, 24), "s1", "tile")
    np.testing.assert_allclose(got[:, 1, 0], ref, atol=1e-4, rtol=0)
    patches = cube.terrafm.embed(model="terrafm-tiny-p8", seed=2, tile=32, stride=8,
                                 level="patch")
    assert patches.shape == (1, model.embed_dim, 6, 6)
    with pytest.raises(UsageError, match="16 px patch size of terrafm-tiny"):
        cube.terrafm.embed(model="terrafm-tiny", tile=24)
    with pytest.raises(UsageError, match="8 px patch size of terrafm-tiny-p8"):
        cube.terrafm.embed(model="terrafm-tiny-p8", tile=20)
    with pytest.raises(UsageError, match="stride must be a multiple of the 8 px"):
        cube.terrafm.embed(model="terrafm-tiny-p8", tile=32, stride=12, level="patch")


def test_partial_nan_windows_reach_model_filled(make_cube, tiny_weights, tiny_model):
    """A window with 30% NaN (above min_valid): finite output equal to the filled window."""
    cube = make_cube(64, 64, n_dates=1, nan_box=(0, 64, 0, 19))
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, min_valid=0.6)
    got = emb.values[0, :, 0, 0]
    assert np.isfinite(got).all()
    ref = _by_hand(tiny_model, cube.values, "s1", "tile")
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    masked = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64, min_valid=0.8)
    assert np.isnan(masked.values).all()


def test_random_init_is_seeded_and_recorded(make_cube):
    cube = make_cube(64, 64, n_dates=1)
    a = cube.terrafm.embed(model="terrafm-tiny", tile=64)
    b = cube.terrafm.embed(model="terrafm-tiny", tile=64, seed=1)
    assert a.attrs["weights"] == "random-init(seed=0)"
    assert a.attrs["weights_sha256"] != b.attrs["weights_sha256"]
    assert a.attrs["weights_sha256"] == xterrafm.load_model("terrafm-tiny").weights_sha256
    assert not np.allclose(a.values, b.values)


def test_bad_inputs_are_refused(make_cube, tiny_weights):
    cube = make_cube(64, 64, n_dates=1)
    kw = dict(model="terrafm-tiny", weights=tiny_weights)
    with pytest.raises(ValueError, match="no 'modality'"):
        xterrafm.embedding.embed(cube.assign_attrs(modality=None), **kw)
    with pytest.raises(ValueError, match="has 12 bands"):
        xterrafm.embedding.embed(cube.drop_vars("band"), modality="s2_l2a", **kw)
    with pytest.raises(ValueError, match="band B01 of modality 's2_l2a' is missing"):
        cube.terrafm.embed(modality="s2_l2a", **kw)
    with pytest.raises(ValueError, match="level must be"):
        cube.terrafm.embed(level="pixels", **kw)
    no_crs = xr.DataArray(cube.data, dims=cube.dims, attrs=cube.attrs,
                          coords={d: cube[d].values for d in ("time", "band", "y", "x")})
    with pytest.raises(ValueError, match="no CRS|geo-referencing"):
        no_crs.terrafm.embed(**kw)
    with pytest.raises(ValueError, match="'band' dimension"):
        cube.isel(band=0).terrafm.embed(**kw)
    with pytest.raises(FileNotFoundError):
        cube.terrafm.embed(model="terrafm-tiny", weights="/nonexistent/w.safetensors")


def test_model_is_not_in_the_graph(make_cube, tiny_weights):
    import io
    import pickle

    cube = make_cube(128, 128)
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64)
    graph = dict(emb.data.__dask_graph__())
    found = []

    class Spy(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, (torch.nn.Module, torch.Tensor)):
                found.append(type(obj).__name__)
            return None

    buf = io.BytesIO()
    Spy(buf).dump(graph)
    assert found == []
    assert b"ModelSpec" in buf.getvalue()  # what travels instead: names and the weights hash
