"""Resuming never skips the wrong thing: the data-loss cases of issue 14.

Each test damages or disturbs a store the way a user could (another read chunk on resume, a
chunk file deleted or torn after its block was marked done, weights that give NaN, a run that
fails part way) and checks that the store ends equal to an undisturbed run, or that the run
fails saying why, with counts that match what is on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.store.conftest import TINY, chunk_file, read_embeddings, stored_chunks
from xterrafm.errors import EmbedJobError, XterrafmError
from xterrafm.store import embed_to_zarr, store_status


class _Stop(Exception):
    """Raised from ``on_wave`` to stop a run part way (as a crash would)."""


def _stop_after(waves: int):
    def hook(summary) -> None:
        if summary.waves >= waves:
            raise _Stop
    return hook


def _assert_same_embeddings(got: np.ndarray, want: np.ndarray) -> None:
    """Equal NaN pattern (no cell lost or invented) and equal values up to float32 rounding
    of batched matrix products (batches may be composed differently)."""
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def cube(make_cube):
    """2 dates, 192 x 160 px S1 with a NaN box, read in 64 px chunks: 60 blocks at tile 32."""
    return make_cube(192, 160, chunks=64, nan_box=(150, 192, 0, 40))


@pytest.fixture(scope="module")
def reference(cube, tiny_weights, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("reference") / "emb.zarr"
    summary = embed_to_zarr(cube, store, weights=tiny_weights, **TINY)
    assert summary.complete
    return store


def test_resume_with_another_read_chunk_fills_every_cell(cube, reference, tiny_weights,
                                                          tmp_path):
    store = tmp_path / "emb.zarr"
    with pytest.raises(_Stop):
        embed_to_zarr(cube, store, weights=tiny_weights, wave_size=4, on_wave=_stop_after(1),
                      **TINY)
    # the same job resumed with 128 px read chunks (``--chunk 128``): other default blocks
    summary = embed_to_zarr(cube.chunk({"y": 128, "x": 128}), store, weights=tiny_weights,
                            **TINY)
    _assert_same_embeddings(read_embeddings(store), read_embeddings(reference))
    status = store_status(store)
    assert status.complete
    assert status.counts.found.blocks == status.counts.blocks_total
    assert summary.counts.found.blocks == 4
    assert summary.counts.found.blocks + summary.counts.written.blocks == \
        summary.counts.blocks_total
    # and once more at the original chunk: nothing left to do, nothing lost
    again = embed_to_zarr(cube, store, weights=tiny_weights, **TINY)
    assert again.counts.written.blocks == 0 and again.complete
    _assert_same_embeddings(read_embeddings(store), read_embeddings(reference))


def _copy(reference: Path, tmp_path: Path) -> Path:
    store = tmp_path / "emb.zarr"
    shutil.copytree(reference, store)
    return store


def test_a_deleted_chunk_is_rewritten_and_reported(cube, reference, tiny_weights, tmp_path):
    store = _copy(reference, tmp_path)
    victim = stored_chunks(store)[3]
    chunk_file(store, victim).unlink()
    assert not store_status(store).complete  # the status does not vouch for a missing chunk
    summary = embed_to_zarr(cube, store, weights=tiny_weights, **TINY)
    _assert_same_embeddings(read_embeddings(store), read_embeddings(reference))
    assert summary.counts.written.blocks == 1
    assert summary.counts.repaired == 1
    assert summary.complete and store_status(store).complete


def test_a_truncated_chunk_is_rewritten_and_reported(cube, reference, tiny_weights, tmp_path):
    store = _copy(reference, tmp_path)
    victim = stored_chunks(store)[5]
    path = chunk_file(store, victim)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a torn write
    assert not store_status(store).complete
    summary = embed_to_zarr(cube, store, weights=tiny_weights, **TINY)
    _assert_same_embeddings(read_embeddings(store), read_embeddings(reference))
    assert summary.counts.written.blocks == 1 and summary.counts.repaired == 1
    assert path.read_bytes() == data


def test_a_corrupted_chunk_of_the_same_size_is_found_by_the_checksum(cube, reference,
                                                                      tiny_weights, tmp_path):
    store = _copy(reference, tmp_path)
    path = chunk_file(store, stored_chunks(store)[2])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store_status(store).complete  # sizes alone cannot see it
    assert not store_status(store, verify="checksum").complete
    summary = embed_to_zarr(cube, store, weights=tiny_weights, verify="checksum", **TINY)
    assert summary.counts.repaired == 1
    _assert_same_embeddings(read_embeddings(store), read_embeddings(reference))


def test_weights_that_give_nan_fail_naming_the_windows(cube, nan_weights, tmp_path):
    store = tmp_path / "emb.zarr"
    with pytest.raises(XterrafmError, match=r"(?s)NaN.*window"):
        embed_to_zarr(cube, store, weights=nan_weights, **TINY)
    status = store_status(store)
    assert status.counts.found.empty == 0  # nothing was passed off as "empty"
    assert not status.complete


def test_nan_weights_in_a_batch_job_exit_1_and_count_nothing_as_empty(small_scene, nan_weights,
                                                                       tmp_path, capsys):
    from xterrafm.cli import EXIT_FAILURE, main

    out = tmp_path / "emb.zarr"
    code = main(["embed", str(small_scene.item_collections["s2_l2a"]), "--out", str(out),
                 "--cluster", "threads", "--weights", nan_weights, "--model", "terrafm-tiny",
                 "--tile", "32", "--chunk", "64", "--batch-size", "16", "--no-preview",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_FAILURE, err
    assert "NaN" in err and "window" in err
    assert "skipped as empty:       0" in err


def test_a_failed_runs_summary_counts_what_it_wrote(small_scene, tmp_path):
    """The second date cannot be read: the run fails part way through a wave. Its summary must
    count as written exactly the blocks whose markers it left, none as resumed."""
    from xterrafm.batch.job import EmbedJob, run_embed_job
    from xterrafm.batch.sources import SourceSelection
    from xterrafm.embedding.settings import EmbedSettings

    scene = tmp_path / "scene"
    shutil.copytree(small_scene.root, scene)
    rel = small_scene.band_paths["s2_l2a"][1]["B04"].relative_to(small_scene.root)
    (scene / rel).write_bytes(b"not a GeoTIFF")
    out = tmp_path / "emb.zarr"
    job = EmbedJob(out=out, inputs=SourceSelection(
        sources=(str(scene / "stac" / "item_collections" / "s2_l2a.json"),), chunk=64),
        settings=EmbedSettings(model="terrafm-tiny", tile=32, batch_size=16),
        preview=False, wave_size=7, cluster="threads", progress=False)
    with pytest.raises(EmbedJobError) as info:
        run_embed_job(job)
    summary = info.value.summary
    markers = sorted((out / "embeddings" / ".xterrafm" / "blocks").glob("*.json"))
    assert len(markers) > 0
    assert summary.found.blocks == 0 and summary.found.cells == 0
    assert summary.written.blocks == len(markers)
    (store,) = summary.stores
    assert store.counts.blocks_failed == store.counts.blocks_total - len(markers)
    text = summary.format()
    assert "already done (resumed): 0" in text
    assert f"{len(markers)} blocks written" in text
