"""Putting a Sentinel-1 cube on a Sentinel-2 cube's grid with ``load_stac(..., like=s2)``, then
fusing the two real reader outputs (COGs via STAC)."""

from __future__ import annotations

import numpy as np

import xterrafm
from xterrafm.io import load_stac


def test_like_puts_s1_on_the_s2_grid_and_the_pair_fuses(synthetic_scene, tiny_weights):
    s2 = load_stac(synthetic_scene.item_collections["s2_l2a"], modality="s2_l2a",
                   chunks={"time": 1, "y": 224, "x": 224})
    # a sub-area whose origin is not the S1 rasters' own: like= must follow it
    s2 = s2.isel(y=slice(37, 37 + 160), x=slice(101, 101 + 192))
    s1 = load_stac(synthetic_scene.item_collections["s1"], modality="s1", like=s2)
    assert s1.odc.geobox == s2.odc.geobox
    assert s1.dims == ("time", "band", "y", "x") and list(s1.band.values) == ["VV", "VH"]
    np.testing.assert_array_equal(s1.x.values, s2.x.values)
    native = load_stac(synthetic_scene.item_collections["s1"], modality="s1")
    # same 10 m grid phase: the like= read equals the native read at those pixels
    np.testing.assert_allclose(
        s1.isel(time=0).values, native.isel(time=0).sel(y=s2.y, x=s2.x).values, equal_nan=True)

    emb = xterrafm.embed({"s2_l2a": s2, "s1": s1}, model="terrafm-tiny", weights=tiny_weights,
                         tile=64)
    assert emb.shape == (2, 32, 3, 3) and emb.attrs["modality"] == "s2_l2a+s1"
    # the scene's dates are shared by S1 and S2: every date finds its partner
    assert "" not in emb.attrs["paired_time_s1"]
    values = emb.values
    assert np.isfinite(values).all(axis=1).sum() >= 2 * 9 - 4
