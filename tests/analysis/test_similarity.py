"""``similarity`` and ``top_k``: known answers (the query scores 1), laziness, bounded memory."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rioxarray  # noqa: F401  (.rio)
import xarray as xr

import xterrafm  # noqa: F401  (registers the accessor)
from tests.helpers.counting import raise_if_dask_computes
from xterrafm.analysis.search import top_k
from xterrafm.analysis.similarity_map import similarity
from xterrafm.errors import UsageError


def _cos_by_hand(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.einsum("tdyx,d->tyx", v, q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))


def test_similarity_is_lazy_one_at_the_query_and_equals_numpy(make_emb):
    emb = make_emb()
    x, y, t = float(emb.x[2]), float(emb.y[4]), emb.time.values[1]
    with raise_if_dask_computes():
        sim = emb.terrafm.similarity(x=x + 30.0, y=y - 50.0, time=t)  # within the cell
    assert sim.dims == ("time", "y", "x") and sim.dtype == np.float32
    assert sim.attrs["query_x"] == x and sim.attrs["query_y"] == y
    values = sim.values
    assert values[1, 4, 2] == 1.0  # the query cell itself: exactly 1
    want = _cos_by_hand(emb.values, emb.values[1, :, 4, 2].astype(np.float64))
    np.testing.assert_allclose(values, want, atol=1e-6)
    assert np.nanmin(values) >= -1 and np.nanmax(values) <= 1
    assert "spatial_ref" in sim.coords and sim.rio.crs == emb.rio.crs


def test_vector_query_nan_cells_and_opposite_vectors(make_emb):
    values = np.random.default_rng(1).standard_normal((1, 8, 4, 5))
    values[0, :, 0, 0] = np.nan
    values[0, :, 3, 4] = -2.5 * values[0, :, 1, 1]
    emb = make_emb(values=values)
    sim = similarity(emb, vector=values[0, :, 1, 1]).values
    assert sim[0, 1, 1] == 1.0 and sim[0, 3, 4] == -1.0 and np.isnan(sim[0, 0, 0])
    # a one-date cube needs no time=; a DataArray vector works too
    one = similarity(emb, x=float(emb.x[1]), y=float(emb.y[1]))
    np.testing.assert_array_equal(one.values, sim)
    assert similarity(emb, vector=xr.DataArray(values[0, :, 1, 1])).shape == (1, 4, 5)


def test_bad_queries_are_refused(make_emb):
    emb = make_emb()
    with pytest.raises(UsageError, match="time="):
        similarity(emb, x=float(emb.x[0]), y=float(emb.y[0]))  # two dates: which?
    with pytest.raises(UsageError, match="outside"):
        similarity(emb, x=float(emb.x[0]) - 1000, y=float(emb.y[0]), time=emb.time.values[0])
    with pytest.raises(UsageError, match="not one date"):
        similarity(emb, x=float(emb.x[0]), y=float(emb.y[0]), time="1999-01-01")
    with pytest.raises(ValueError, match="components"):
        similarity(emb, vector=np.ones(3))
    with pytest.raises(UsageError, match="either"):
        similarity(emb, vector=np.ones(8), x=1.0)


def test_top_k_returns_the_planted_matches_first(make_emb):
    values = np.random.default_rng(2).standard_normal((2, 8, 6, 7))
    q = values[0, :, 2, 3].copy()
    for t, iy, ix, s in [(1, 5, 6, 3.0), (0, 0, 0, 0.5), (1, 2, 3, 2.0)]:
        values[t, :, iy, ix] = s * q  # the same direction: cosine 1
    values[0, :, 4, 4] = np.nan
    emb = make_emb(values=values)
    hits = top_k(emb, k=6, x=float(emb.x[3]), y=float(emb.y[2]), time="2024-06-01")
    assert list(hits.columns[:4]) == ["score", "time", "y", "x"]
    assert (hits.score.values[:4] == 1.0).all()
    # ties in order of (time, y, x): the query (0, 2, 3), then (0, 0, 0), (1, 2, 3), (1, 5, 6)
    assert list(zip(hits.it[:4], hits.iy[:4], hits.ix[:4], strict=True)) == [
        (0, 0, 0), (0, 2, 3), (1, 2, 3), (1, 5, 6)]
    assert hits.x.iloc[0] == float(emb.x[0]) and hits.y.iloc[3] == float(emb.y[5])
    full = _cos_by_hand(np.nan_to_num(values, nan=0.0), q).ravel()
    full[np.flatnonzero(np.isnan(values).any(axis=1).ravel())] = -np.inf
    want = np.sort(full)[::-1][:6]
    np.testing.assert_allclose(hits.score.values, want, atol=1e-6)


class _LargestResult(dask.callbacks.Callback):
    """Records the largest array any task returned (tuples of arrays summed)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.tasks = 0

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        parts = result if isinstance(result, tuple) else (result,)
        size = sum(p.nbytes for p in parts if isinstance(p, np.ndarray))
        self.largest = max(self.largest, size)
        self.tasks += 1


@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_top_k_over_a_store_reads_block_by_block_in_one_compute(make_emb, tmp_path):
    emb = make_emb(n_time=3, dim=16, ny=24, nx=30, chunks=6, seed=3)
    emb.to_dataset().to_zarr(tmp_path / "emb.zarr", zarr_format=3, consolidated=True)
    block_bytes = 16 * 6 * 6 * 4  # one (1, D, 6, 6) float32 block
    whole = emb.size * 4
    assert whole >= 50 * block_bytes
    probe = _LargestResult()
    with raise_if_dask_computes(max_computes=1), probe:
        hits = top_k(str(tmp_path / "emb.zarr"), k=5, x=float(emb.x[7]), y=float(emb.y[11]),
                     time=emb.time.values[2])
    assert probe.tasks > 3 * 4 * 5  # one task per block at least: nothing was concatenated
    assert probe.largest <= block_bytes  # no task ever held more than one block
    assert hits.score.iloc[0] == 1.0 and (hits.iy.iloc[0], hits.ix.iloc[0]) == (11, 7)
    brute = similarity(emb, x=float(emb.x[7]), y=float(emb.y[11]),
                       time=emb.time.values[2]).values.ravel()
    np.testing.assert_allclose(hits.score.values, np.sort(brute)[::-1][:5], atol=1e-6)


def test_top_k_checks_its_arguments(make_emb):
    emb = make_emb()
    with pytest.raises(UsageError, match="k must"):
        top_k(emb, k=0, vector=np.ones(8))
    assert len(top_k(emb.isel(x=[0], y=[0]), k=5, vector=np.ones(8))) == 2  # 2 cells only
