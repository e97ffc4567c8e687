"""Fused S1 + S2 stores go through the same store path: dtypes, conventions, the STAC Item and
the check of the model's output apply to them as to single-modality stores."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest

import xterrafm
from tests.store.conftest import TINY
from xterrafm.errors import ModelOutputError
from xterrafm.store import embed_to_zarr, open_embeddings, store_status


@pytest.fixture()
def pair(make_cube):
    """Co-registered S2 (two dates) and S1 (one date, two days after the first) cubes."""
    s2 = make_cube(64, 96, modality="s2_l2a", chunks=32)
    s1 = make_cube(64, 96, modality="s1", n_dates=1, chunks=32, seed=1)
    s1 = s1.assign_coords(time=np.array(["2021-01-17"], dtype="datetime64[ns]"))
    s2.attrs["source_hrefs"] = ["https://example.org/items/S2_1"]
    s1.attrs["source_hrefs"] = ["https://example.org/items/S1_1"]
    return {"s2_l2a": s2, "s1": s1}


def test_an_int8_fused_store_records_both_modalities(pair, tiny_weights, tmp_path):
    store = tmp_path / "fused.zarr"
    summary = embed_to_zarr(pair, store, weights=tiny_weights, dtype="int8", **TINY)
    assert summary.complete and summary.counts.written.blocks > 0
    want = xterrafm.embed(pair, model="terrafm-tiny", weights=tiny_weights, tile=32).values
    got = open_embeddings(store).values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    cos = np.nansum(got * want, axis=1) / (np.linalg.norm(np.nan_to_num(got), axis=1)
                                          * np.linalg.norm(np.nan_to_num(want), axis=1))
    assert np.nanmin(cos) > 0.99  # int8 unit vectors with a scale per cell
    attrs = json.loads((store / ".zattrs").read_text())
    assert attrs["geoemb:data_type"] == "int8" and "geoemb:quantization" in attrs
    assert attrs["geoemb:source_data"] == ["https://example.org/items/S1_1",
                                           "https://example.org/items/S2_1"]
    item = pystac.Item.from_file(str(tmp_path / "fused.stac-item.json"))
    assert item.properties["emb:runtime_parameters"]["modality"] == "s2_l2a+s1"
    assert "s2_l2a + s1" in item.properties["description"]
    sources = sorted(link.href for link in item.links if link.rel == "emb:source-data")
    assert sources == ["https://example.org/items/S1_1", "https://example.org/items/S2_1"]


def test_weights_that_give_nan_fail_a_fused_store_naming_the_windows(pair, nan_weights,
                                                                     tmp_path):
    store = tmp_path / "fused.zarr"
    with pytest.raises(ModelOutputError, match=r"(?s)NaN.*window \(row"):
        embed_to_zarr(pair, store, weights=nan_weights, **TINY)
    status = store_status(store)
    assert status.counts.found.empty == 0 and not status.complete
