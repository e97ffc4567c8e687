"""Stores in float32, float16 and int8 round-trip with the documented loss.

float32 is exact; float16 is within half a unit in the last place (relative 2**-11); int8
keeps one scale per cell and each component is within half a quantisation step
(``max|v| / 254``) of float32. Empty cells stay NaN in every type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.store.conftest import TINY
from xterrafm.errors import StoreError, StoreMismatchError, UsageError
from xterrafm.store import StoreEncoding, embed_to_zarr, open_embeddings
from xterrafm.store.encoding import INT8_NODATA, decode_int8, encode_int8


@pytest.fixture(scope="module")
def cube(make_cube):
    return make_cube(128, 96, chunks=64, nan_box=(96, 128, 0, 40))


@pytest.fixture(scope="module")
def stores(cube, tiny_weights, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dtypes")
    out = {}
    for dtype in ("float32", "float16", "int8"):
        out[dtype] = root / f"{dtype}.zarr"
        summary = embed_to_zarr(cube, out[dtype], weights=tiny_weights, dtype=dtype, **TINY)
        assert summary.complete
    return out


def _chunk_bytes(store: Path) -> int:
    return sum(p.stat().st_size for name in ("embeddings", "scales")
               for p in (store / name).glob("*") if p.is_file() and not p.name.startswith("."))


def test_every_dtype_reads_back_as_float32_with_the_documented_loss(stores):
    ref = open_embeddings(stores["float32"]).values
    assert ref.dtype == np.float32 and np.isnan(ref).any() and np.isfinite(ref).any()
    half = open_embeddings(stores["float16"])
    q8 = open_embeddings(stores["int8"])
    assert half.dtype == np.float32 and q8.dtype == np.float32
    assert half.attrs["stored_dtype"] == "float16" and q8.attrs["stored_dtype"] == "int8"
    for got in (half.values, q8.values):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(half.values, ref, rtol=2.0**-11, atol=1e-7)
    amax = np.abs(np.nan_to_num(ref)).max(axis=1, keepdims=True)
    err = np.abs(q8.values - ref)
    assert np.all(err[np.isfinite(ref)] <= (np.broadcast_to(amax, ref.shape) / 254 * 1.0001
                                           + 1e-7)[np.isfinite(ref)])
    v, w = np.moveaxis(ref, 1, -1), np.moveaxis(q8.values, 1, -1)
    ok = np.isfinite(v).all(-1)
    cos = (v[ok] * w[ok]).sum(-1) / np.linalg.norm(v[ok], axis=-1) / np.linalg.norm(w[ok], axis=-1)
    assert cos.min() > 0.999
    # the values are not a copy of float32: the stored arrays hold the smaller types
    assert zarr.open_array(str(stores["float16"]), path="embeddings").dtype == np.float16
    assert zarr.open_array(str(stores["int8"]), path="embeddings").dtype == np.int8
    assert zarr.open_array(str(stores["int8"]), path="embeddings").fill_value == INT8_NODATA
    assert _chunk_bytes(stores["int8"]) < _chunk_bytes(stores["float16"]) \
        < _chunk_bytes(stores["float32"])


def test_int8_stores_record_their_quantisation(stores):
    attrs = zarr.open_group(str(stores["int8"]), mode="r").attrs
    assert attrs["geoemb:data_type"] == "int8"
    assert attrs["geoemb:quantization"] == {
        "method": "per_pixel_scale", "original_dtype": "float32", "quantized_dtype": "int8",
        "scale_array": "scales", "nodata": "nan"}
    arr_attrs = zarr.open_array(str(stores["int8"]), path="embeddings").attrs
    assert arr_attrs["quantization_nodata"] == INT8_NODATA
    raw = open_embeddings(stores["int8"], decode=False)
    assert raw.dtype == np.int8 and (raw.values == INT8_NODATA).any()
    assert "geoemb:quantization" not in zarr.open_group(str(stores["float16"]), mode="r").attrs


def test_the_dtype_is_part_of_the_fingerprint(stores, cube, tiny_weights):
    with pytest.raises(StoreMismatchError, match="dtype: store has 'int8', this run has 'float32'"):
        embed_to_zarr(cube, stores["int8"], weights=tiny_weights, **TINY)
    again = embed_to_zarr(cube, stores["int8"], weights=tiny_weights, dtype="int8", **TINY)
    assert again.counts.written.blocks == 0 and again.complete


def test_a_bad_dtype_is_refused_before_anything_is_written(cube, tiny_weights, tmp_path):
    with pytest.raises(UsageError, match="dtype must be one of"):
        embed_to_zarr(cube, tmp_path / "x.zarr", weights=tiny_weights, dtype="uint8", **TINY)
    assert not (tmp_path / "x.zarr").exists()


def test_int8_quantisation_bounds_and_nodata():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 64, 5, 4)).astype(np.float32) * rng.uniform(
        0.01, 100, size=(3, 1, 5, 4)).astype(np.float32)
    values[1, :, 2, 3] = np.nan
    values[2, :, 0, 0] = 0.0
    q, scale = encode_int8(values, axis=1)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (3, 5, 4)
    assert (q[1, :, 2, 3] == INT8_NODATA).all() and np.isnan(scale[1, 2, 3])
    assert q[np.isfinite(values)].min() >= -127  # -128 is only ever nodata
    back = decode_int8(q, scale, axis=1)
    assert np.isnan(back[1, :, 2, 3]).all()
    np.testing.assert_array_equal(back[2, :, 0, 0], 0.0)
    bound = np.broadcast_to(np.abs(np.nan_to_num(values)).max(axis=1, keepdims=True) / 254
                            * 1.0001, values.shape)
    ok = np.isfinite(values)
    assert (np.abs(back - values)[ok] <= bound[ok]).all()


def test_float16_refuses_values_beyond_its_range():
    block = np.array([[1.0, 7e4], [np.nan, np.nan]], dtype=np.float32)
    with pytest.raises(StoreError, match="exceed the float16 range"):
        StoreEncoding("float16").encode(block, axis=1)
    fine = StoreEncoding("float16").encode(np.array([[1.0, 6e4]], np.float32), axis=1)
    assert fine["embeddings"].dtype == np.float16


def test_the_command_line_writes_and_checks_the_dtype(small_scene, tmp_path, capsys):
    from xterrafm.cli import EXIT_OK, EXIT_STORE_MISMATCH, main

    out = tmp_path / "emb.zarr"
    args = ["embed", str(small_scene.item_collections["s2_l2a"]), "--out", str(out),
            "--cluster", "threads", "--model", "terrafm-tiny", "--tile", "32", "--chunk", "96",
            "--no-preview", "--no-progress", "-q"]
    assert main([*args, "--dtype", "int8", "--verify", "checksum"]) == EXIT_OK
    assert zarr.open_array(str(out), path="embeddings").dtype == np.int8
    assert zarr.open_group(str(out), mode="r").metadata.zarr_format == 2
    emb = open_embeddings(out)
    assert emb.dtype == np.float32 and np.isfinite(emb.values).any()
    assert main(args) == EXIT_STORE_MISMATCH  # float32 into an int8 store
    assert "dtype: store has 'int8'" in capsys.readouterr().err
