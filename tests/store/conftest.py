"""Fixtures of the store tests: tiny weights, hand-built cubes, a small synthetic STAC scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.embed.conftest import make_cube, tiny_weights  # noqa: F401  (fixtures)

#: Tiny model and small windows: stores of 20-60 blocks that each take a fraction of a second.
TINY = dict(model="terrafm-tiny", tile=32, batch_size=16, progress=False)


@pytest.fixture(scope="session")
def nan_weights(tmp_path_factory) -> str:
    """terrafm-tiny weights with one corrupted (NaN) value in the last MLP: every output is NaN."""
    from xterrafm.weights import convert_weights, load_model

    state = load_model("terrafm-tiny", seed=123).state_dict()
    state["blocks.3.mlp.fc2.weight"][0, 0] = float("nan")
    path = tmp_path_factory.mktemp("nan-weights") / "terrafm-tiny-nan.safetensors"
    convert_weights(state, path)
    return str(path)


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory):
    """A 192 x 192 px, 2-date Sentinel-2 L2A synthetic scene (COGs + STAC). Read-only."""
    from xterrafm.datasets import make_synthetic_scene

    root = tmp_path_factory.mktemp("store_scene")
    return make_synthetic_scene(root, seed=0, width=192, height=192, n_dates=2,
                                modalities=("s2_l2a",))


def chunk_file(store: Path, index: tuple[int, ...], array: str = "embeddings") -> Path:
    """Path of the stored chunk ``index`` of ``array`` (any Zarr format)."""
    import zarr

    arr = zarr.open_array(store=str(store), path=array, mode="r")
    return Path(store) / array / arr.metadata.encode_chunk_key(index)


def stored_chunks(store: Path, array: str = "embeddings") -> list[tuple[int, ...]]:
    """Indices of the chunks of ``array`` that have a file in the store."""
    import zarr

    arr = zarr.open_array(store=str(store), path=array, mode="r")
    grid = [-(-n // c) for n, c in zip(arr.shape, arr.chunks, strict=True)]
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*grid)
            if chunk_file(store, tuple(int(i) for i in idx), array).exists()]


def read_embeddings(store: Path) -> np.ndarray:
    """The float values of a store's ``embeddings`` as xarray reads them (no decoding)."""
    import xarray as xr

    with xr.open_zarr(store, decode_coords="all") as ds:
        return ds["embeddings"].values
