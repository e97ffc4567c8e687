"""Fused S1 + S2 embeddings: ``embed({"s1": ..., "s2_l2a": ...})`` against ``forward_fused`` by
hand, the date pairing, the fallbacks to one modality, refusals, and the store path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xterrafm
from tests.helpers.counting import raise_if_dask_computes
from xterrafm.embedding.pairing import pair_dates, parse_tolerance
from xterrafm.errors import InputError, NoFusionWeightsError, StoreMismatchError, UsageError

TILE = 32


@pytest.fixture(scope="module")
def tiny_model(tiny_weights):
    return xterrafm.load_model("terrafm-tiny", tiny_weights)


@pytest.fixture()
def pair(make_cube):
    """An S2 cube with two dates and an S1 cube with one date two days after the first."""
    s2 = make_cube(64, 96, modality="s2_l2a", chunks=32)
    s1 = make_cube(64, 96, modality="s1", n_dates=1, chunks=32, seed=1)
    s1 = s1.assign_coords(time=np.array(["2021-01-17"], dtype="datetime64[ns]"))
    return s2, s1


def _prepared(window: np.ndarray, modality: str) -> torch.Tensor:
    x = xterrafm.normalize(window, modality)
    return torch.from_numpy(np.where(np.isfinite(x), x, 0).astype(np.float32))


def test_fused_graph_computes_only_the_value_samples(pair, tiny_weights):
    s2, s1 = pair
    xterrafm.load_model("terrafm-tiny", tiny_weights)
    with raise_if_dask_computes(max_computes=2):  # one bounded value sample per cube
        emb = xterrafm.embed({"s1": s1, "s2_l2a": s2}, model="terrafm-tiny",
                             weights=tiny_weights, tile=TILE)
    assert emb.dims == ("time", "embedding", "y", "x") and emb.shape == (2, 32, 2, 3)
    assert emb.rio.crs == s2.rio.crs
    assert emb.attrs["modality"] == "s2_l2a+s1" and emb.attrs["modalities"] == ["s2_l2a", "s1"]
    assert emb.attrs["paired_time_s1"] == [str(s1.time.values[0]), ""]


@pytest.mark.parametrize("level", ["tile", "patch"])
def test_fused_equals_forward_fused_by_hand_and_differs_from_s2_alone(pair, tiny_weights,
                                                                       tiny_model, level):
    s2, s1 = pair
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=TILE, level=level)
    fused = xterrafm.embed({"s2_l2a": s2, "s1": s1}, **kw).compute().values
    alone = s2.terrafm.embed(**kw).compute().values
    y0, x0 = 32, 64  # the window at row 1, column 2, date 0
    inputs = {"s2_l2a": _prepared(s2.values[:1, :, y0:y0 + TILE, x0:x0 + TILE], "s2_l2a"),
              "s1": _prepared(s1.values[:1, :, y0:y0 + TILE, x0:x0 + TILE], "s1")}
    with torch.inference_mode():
        if level == "tile":
            want = tiny_model.forward_fused(inputs).numpy()[0]
            got = fused[0, :, 1, 2]
        else:
            want = tiny_model.forward_fused_features(inputs)["patch"].numpy()[0]
            got = fused[0, :, 2:4, 4:6]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the radar changes the embedding: fused differs from S2 alone well beyond rounding
    assert np.abs(fused[0] - alone[0]).max() > 0.05
    # date 1 has no S1 partner within 6 days: the S2 embedding exactly
    np.testing.assert_allclose(fused[1], alone[1], rtol=1e-5, atol=1e-6)


def test_modality_order_in_the_mapping_does_not_matter(pair, tiny_weights):
    s2, s1 = pair
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=TILE)
    a = xterrafm.embed({"s1": s1, "s2_l2a": s2}, **kw)
    b = xterrafm.embed({"s2_l2a": s2, "s1": s1}, **kw)
    assert a.attrs["modalities"] == b.attrs["modalities"] == ["s2_l2a", "s1"]
    np.testing.assert_array_equal(a.values, b.values)


def test_cloudy_optical_window_falls_back_to_radar(make_cube, tiny_weights, tiny_model):
    s2 = make_cube(64, 64, modality="s2_l2a", n_dates=1, chunks=32, nan_box=(0, 32, 0, 32))
    s1 = make_cube(64, 64, modality="s1", n_dates=1, chunks=32, seed=1,
                   nan_box=(32, 64, 32, 64))
    emb = xterrafm.embed({"s2_l2a": s2, "s1": s1}, model="terrafm-tiny", weights=tiny_weights,
                         tile=TILE).values
    with torch.inference_mode():
        radar = tiny_model(_prepared(s1.values[:, :, :32, :32], "s1"), modality="s1").numpy()[0]
        optical = tiny_model(_prepared(s2.values[:, :, 32:, 32:], "s2_l2a"),
                             modality="s2_l2a").numpy()[0]
    np.testing.assert_allclose(emb[0, :, 0, 0], radar, rtol=1e-4, atol=1e-5)  # S2 missing
    np.testing.assert_allclose(emb[0, :, 1, 1], optical, rtol=1e-4, atol=1e-5)  # S1 missing
    both = xterrafm.embed({"s2_l2a": s2, "s1": s1.where(False)}, model="terrafm-tiny",
                          weights=tiny_weights, tile=TILE).values
    assert np.isnan(both[0, :, 0, 0]).all() and np.isfinite(both[0, :, 1, 1]).all()


def test_pairing_nearest_within_the_tolerance():
    d = np.array(["2024-06-01", "2024-06-11", "2024-06-30"], dtype="datetime64[ns]")
    s1 = np.array(["2024-06-07", "2024-06-03", "2024-06-09", "2024-06-13"],
                  dtype="datetime64[ns]")
    # 06-01 -> 06-03 (2 d); 06-11 -> 06-09 and 06-13 both 2 d: the earlier; 06-30 -> none
    assert pair_dates(d, s1, parse_tolerance("6D")).tolist() == [1, 2, -1]
    assert pair_dates(d, s1, parse_tolerance("2D")).tolist() == [1, 2, -1]  # inclusive
    assert pair_dates(d, s1, parse_tolerance("47h")).tolist() == [-1, -1, -1]
    assert pair_dates(d, s1[:0], 1e9).tolist() == [-1, -1, -1]
    assert parse_tolerance("2 weeks") == 14 * 86400 and parse_tolerance("36h") == 36 * 3600
    with pytest.raises(ValueError, match="duration"):
        parse_tolerance("soon")


def test_pair_tolerance_is_a_setting(pair, tiny_weights):
    s2, s1 = pair
    emb = xterrafm.embed({"s2_l2a": s2, "s1": s1}, model="terrafm-tiny", weights=tiny_weights,
                         tile=TILE, pair_tolerance="1D")
    assert emb.attrs["paired_time_s1"] == ["", ""] and emb.attrs["pair_tolerance"] == "1D"
    with pytest.raises(UsageError, match="pair_tolerance"):
        xterrafm.EmbedSettings(pair_tolerance="a while")


def test_bad_fused_inputs_are_refused_before_any_work(pair, make_cube, tiny_weights, tmp_path):
    s2, s1 = pair
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=TILE)
    shifted = s1.assign_coords(x=s1.x + 10.0)
    with raise_if_dask_computes():
        with pytest.raises(InputError, match="like="):
            xterrafm.embed({"s2_l2a": s2, "s1": shifted}, **kw)
        with pytest.raises(InputError, match="records modality"):
            xterrafm.embed({"s2_l2a": s2, "s2_l1c": s1}, **kw)
        with pytest.raises(UsageError, match="two or more"):
            xterrafm.embed({"s2_l2a": s2}, **kw)
        with pytest.raises(UsageError, match="modality="):
            xterrafm.embed({"s2_l2a": s2, "s1": s1}, modality="s1", **kw)
    # weights in the published layout (no fusion parameters) cannot fuse
    from xterrafm.weights import convert_weights

    state = {k: v for k, v in xterrafm.load_model("terrafm-tiny", tiny_weights)
             .state_dict().items() if not k.startswith("patch_embed.fusion.")}
    published = tmp_path / "published-layout.safetensors"
    convert_weights(state, published)
    with pytest.raises(NoFusionWeightsError, match="pretrained with fusion"):
        xterrafm.embed({"s2_l2a": s2, "s1": s1}, model="terrafm-tiny", weights=str(published),
                       tile=TILE)


def test_fused_store_is_written_and_resumed_through_the_store_path(pair, tiny_weights,
                                                                  tmp_path):
    s2, s1 = pair
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=TILE)
    cubes = {"s2_l2a": s2, "s1": s1}
    store = tmp_path / "fused.zarr"
    first = xterrafm.embed_to_zarr(cubes, store, progress=False, **kw)
    assert first.state == "new" and first.counts.written.blocks > 0
    back = xr.open_zarr(store, decode_coords="all")["embeddings"]
    np.testing.assert_allclose(back.values, xterrafm.embed(cubes, **kw).values, rtol=1e-6,
                               atol=1e-6)
    assert back.attrs["modality"] == "s2_l2a+s1"
    again = xterrafm.embed_to_zarr(cubes, store, progress=False, **kw)
    assert again.state == "resume" and again.counts.written.blocks == 0
    with pytest.raises(StoreMismatchError, match="modalit"):
        xterrafm.embed_to_zarr(s2, store, progress=False, **kw)
    with pytest.raises(StoreMismatchError, match="pair"):
        xterrafm.embed_to_zarr(cubes, store, progress=False, pair_tolerance="1D", **kw)


def test_fused_cubes_are_calibrated_each_on_its_own(pair, tiny_weights):
    s2, s1 = pair
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=TILE)
    dn = (s2 * 10000 + 1000).round().fillna(0).astype("uint16")
    dn.attrs.update(scale_factor=1e-4, add_offset=-0.1, _FillValue=0)
    physical = (dn.astype("float64") * 1e-4 - 0.1).where(dn != 0).astype("float32")
    physical.attrs = {}
    want = xterrafm.embed({"s1": s1, "s2_l2a": physical}, **kw).compute().values
    got = xterrafm.embed({"s1": s1, "s2_l2a": dn}, **kw).compute().values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError):
        xterrafm.embed({"s1": s1, "s2_l2a": (s2 * 10000).astype("uint16")}, **kw)
    with pytest.raises(UsageError, match="calibration"):
        xterrafm.embed({"s1": s1, "s2_l2a": s2}, calibration="s2-dn", **kw)
