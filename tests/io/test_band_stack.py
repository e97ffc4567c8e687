"""The calibrated band stack: the same values as the separate steps, one task per block."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from xterrafm.io.band_stack import calibrate_block, stack_calibrated


def _separate_steps(dn, scale, offset, nodata, db, scl=None, classes=()):
    """The reference: each step on the whole (T, B, H, W) stack, as array operations."""
    x = np.stack(dn, axis=1).astype(np.float32)
    x = np.where(x != nodata[None, :, None, None], x, np.float32(np.nan))
    x = x * scale[:, :, None, None] + offset[:, :, None, None]
    x = np.where(db[None, :, None, None], 10.0 ** (x / 10.0), x).astype(np.float32)
    if scl is not None:
        x = np.where(np.isin(scl, classes)[:, None], np.float32(np.nan), x)
    return x


@pytest.fixture
def bands():
    rng = np.random.default_rng(0)
    t, h, w = 3, 40, 50
    dn = [rng.integers(0, 60, size=(t, h, w)).astype(np.float32) for _ in range(3)]
    dn[2][0, :5] = np.nan  # a band whose nodata is NaN already
    scale = rng.uniform(0.5, 2.0, size=(t, 3)).astype(np.float32)
    offset = rng.uniform(-1.0, 1.0, size=(t, 3)).astype(np.float32)
    nodata = np.array([0.0, 7.0, np.nan], np.float32)
    db = np.array([False, True, False])
    scl = rng.integers(0, 12, size=(t, h, w)).astype(np.float32)
    return dn, scale, offset, nodata, db, scl


def test_block_equals_the_separate_steps_bit_for_bit(bands):
    dn, scale, offset, nodata, db, scl = bands
    got = calibrate_block(*dn, scale=scale, offset=offset, nodata=nodata, db=db)
    want = _separate_steps(dn, scale, offset, nodata, db)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN where equal: same places
    assert np.isnan(got[:, 0][dn[0] == 0]).all() and np.isnan(got[:, 1][dn[1] == 7]).all()
    assert np.isfinite(got[:, 0][dn[0] != 0]).all()
    masked = calibrate_block(*dn, scl, scale=scale, offset=offset, nodata=nodata, db=db,
                             mask_classes=(3, 8, 9, 10))
    np.testing.assert_array_equal(
        masked, _separate_steps(dn, scale, offset, nodata, db, scl, (3, 8, 9, 10)))
    assert np.isnan(masked[np.broadcast_to(np.isin(scl, (3, 8, 9, 10))[:, None],
                                           masked.shape)]).all()


def test_the_lazy_stack_has_one_task_per_block_and_the_same_values(bands):
    dn, scale, offset, nodata, db, scl = bands
    lazy = [da.from_array(b, chunks=(2, 16, 25)) for b in dn]
    stack = stack_calibrated(lazy, scale=scale, offset=offset, nodata=nodata, db=db,
                             scl=da.from_array(scl, chunks=(2, 16, 25)),
                             mask_classes=(3, 8, 9, 10))
    assert stack.chunks == ((2, 1), (3,), (16, 16, 8), (25, 25))
    layer = stack.__dask_graph__().layers[stack.name]
    assert len(layer) == stack.npartitions == 2 * 3 * 2
    np.testing.assert_array_equal(
        stack.compute(scheduler="sync"),
        _separate_steps(dn, scale, offset, nodata, db, scl, (3, 8, 9, 10)))


def test_classes_without_the_scl_band_are_refused(bands):
    dn, scale, offset, nodata, db, _ = bands
    with pytest.raises(ValueError, match="scl"):
        stack_calibrated([da.from_array(b) for b in dn], scale=scale, offset=offset,
                         nodata=nodata, db=db, mask_classes=(3,))
