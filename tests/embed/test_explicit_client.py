"""A client passed explicitly is used as is, even when it is not the default client.

Kept in a module of its own: the module-scoped default client of ``test_distributed`` would
otherwise be the default here and hide a lookup of the default client.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

distributed = pytest.importorskip("distributed")

from distributed import Client, LocalCluster, default_client  # noqa: E402

from xterrafm.embedding import compute, runtime  # noqa: E402
from xterrafm.store import embed_to_zarr, store_status  # noqa: E402


def test_a_client_that_is_not_the_default(make_cube, tiny_weights, tmp_path):
    cube = make_cube(128, 160, chunks=64, nan_box=(100, 128, 0, 40))
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=64, block_cells=1)
    reference = cube.terrafm.embed(**kw).compute(scheduler="threads")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        with pytest.raises(ValueError, match="No clients found"):
            default_client()  # nothing to fall back on: the passed client must be used
        client.run(runtime.clear_cache)
        store = tmp_path / "e.zarr"
        summary = embed_to_zarr(cube, store, client=client, progress=True, **kw)
        assert summary.complete and summary.counts.written.blocks == 2 * 2 * 3
        (got,) = compute(cube.terrafm.embed(client=client, **kw), client=client, progress=True)
        worker_blocks = sum(s.get("blocks", 0) for s in client.run(runtime.stats).values())
        assert worker_blocks == 2 * summary.counts.written.blocks  # both ran on this client's worker
    assert store_status(store).complete
    back = xr.open_zarr(store, decode_coords="all")["embeddings"]
    np.testing.assert_allclose(back.values, reference.values, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(got.values, reference.values, atol=1e-5, equal_nan=True)
