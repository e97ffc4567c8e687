"""A notebook sequence on the user's own distributed Client: a persisted embedding of a cube
stays alive while the same cube is written to a store."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr

distributed = pytest.importorskip("distributed")

from distributed import Client, LocalCluster, wait  # noqa: E402

from xterrafm.store import embed_to_zarr  # noqa: E402


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("persisted", ["finished", "running"])
def test_store_beside_a_persisted_embedding(make_cube, tiny_weights, tmp_path, persisted):
    cube = make_cube(192, 192, modality="s2_l2a", chunks=80)
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=64)
    records = _Records()
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, \
            Client(cluster):
        emb = cube.terrafm.embed(**kw).persist()
        if persisted == "finished":
            wait(emb)
        logging.getLogger("distributed").addHandler(records)
        try:
            summary = embed_to_zarr(cube, tmp_path / "e.zarr", progress=False, **kw)
        finally:
            logging.getLogger("distributed").removeHandler(records)
        kept = emb.compute()  # the persisted embedding is still whole and usable
    assert summary.complete
    assert not [m for m in records.messages if "run_spec" in m], records.messages
    back = xr.open_zarr(tmp_path / "e.zarr", decode_coords="all")["embeddings"]
    np.testing.assert_allclose(back.values, kept.values, atol=1e-5, equal_nan=True)
