"""``change``: 0 where dates are identical, the cosine distance by hand elsewhere, lazily."""

from __future__ import annotations

import numpy as np
import pytest

import xterrafm  # noqa: F401  (registers the accessor)
from tests.helpers.counting import raise_if_dask_computes
from xterrafm.analysis.change_map import change
from xterrafm.errors import UsageError


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return 1 - (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))


def test_consecutive_dates_lazy_zero_where_identical(make_emb):
    values = np.random.default_rng(0).standard_normal((3, 8, 6, 7))
    values[1, :, :3] = values[0, :, :3]  # top half unchanged between dates 0 and 1
    values[2] = values[1] * 4.0  # date 2: same directions as date 1 everywhere
    values[1, :, 5, 6] = np.nan
    emb = make_emb(values=values)
    with raise_if_dask_computes():
        ch = emb.terrafm.change()
    assert ch.dims == ("time", "y", "x") and ch.shape == (2, 6, 7) and ch.dtype == np.float32
    np.testing.assert_array_equal(ch.time.values, emb.time.values[1:])
    np.testing.assert_array_equal(ch.time_before.values, emb.time.values[:-1])
    out = ch.values
    assert (out[0, :3] == 0).all() and (out[1][np.isfinite(out[1])] == 0).all()
    assert np.isnan(out[0, 5, 6]) and np.isnan(out[1, 5, 6])
    np.testing.assert_allclose(out[0, 3:5], _distance(values[1], values[0])[3:5], atol=1e-6)
    assert (out[0, 3:5] > 0.05).all() and np.nanmax(out) <= 2.0


def test_two_named_dates(make_emb):
    emb = make_emb(n_time=3, seed=4)
    t0, t2 = emb.time.values[0], emb.time.values[2]
    with raise_if_dask_computes():
        ch = change(emb, dates=("2024-06-01", t2))
    assert ch.dims == ("y", "x") and ch.attrs["time_before"] == str(t0)
    np.testing.assert_allclose(ch.values, _distance(emb.values[2], emb.values[0]), atol=1e-6)
    same = change(emb, dates=(t2, t2)).values
    assert (same == 0).all()


def test_change_refuses_what_it_cannot_compare(make_emb):
    emb = make_emb(n_time=1)
    with pytest.raises(UsageError, match="two or more"):
        change(emb)
    with pytest.raises(UsageError, match="time dimension"):
        change(emb.isel(time=0))
    with pytest.raises(UsageError, match="not one date"):
        change(make_emb(), dates=("2024-06-01", "2030-01-01"))
