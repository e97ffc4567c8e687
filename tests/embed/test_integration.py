"""The accessor on real reader output (COGs via STAC), progress bars, and the main job."""

from __future__ import annotations

import numpy as np
import xarray as xr
from PIL import Image

from xterrafm.cli import main
from xterrafm.pca import NODATA_RGB, pca_rgb
from xterrafm.store import embed_to_zarr


def test_embed_reader_cube(synthetic_scene, tiny_weights):
    from xterrafm.io import load_stac

    cube = load_stac(synthetic_scene.item_collections["s2_l2a"], modality="s2_l2a",
                     chunks={"time": 1, "y": 224, "x": 224})
    emb = cube.terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=224, stride=112)
    assert emb.attrs["modality"] == "s2_l2a" and len(emb.attrs["bands"]) == 12
    assert emb.shape[-2:] == (3, 3) and emb.rio.crs == cube.rio.crs
    values = emb.compute(scheduler="threads").values
    assert np.isfinite(values).all(axis=1).sum() >= 2 * 9 - 3  # the orbit-edge wedge may mask


def test_progress_bar_is_shown_and_silenceable(make_cube, tiny_weights, tmp_path, capsys):
    cube = make_cube(128, 128, n_dates=1)
    kw = dict(model="terrafm-tiny", weights=tiny_weights, tile=64, block_cells=1)
    embed_to_zarr(cube, tmp_path / "a.zarr", progress=True, **kw)
    err = capsys.readouterr().err
    assert "embedding blocks" in err and "4/4" in err
    embed_to_zarr(cube, tmp_path / "b.zarr", progress=False, **kw)
    assert "embedding blocks" not in capsys.readouterr().err


def test_pca_rgb_colours_separate_groups():
    emb = np.zeros((8, 4, 6), dtype=np.float32)
    emb[:, :, 3:] = np.arange(8)[:, None, None]  # two groups of cells
    emb[0, 0, 0] = np.nan
    img = pca_rgb(emb + np.random.default_rng(0).normal(0, 1e-3, emb.shape), upscale=2)
    assert img.shape == (8, 12, 3) and img.dtype == np.uint8
    # the NaN cell carries the magenta/white hatch, not a colour PCA could give it
    assert (img[0, 0] == NODATA_RGB).all() and (img[0, 1] == NODATA_RGB).all()
    big = pca_rgb(emb, upscale=8)[:8, :8]
    assert {tuple(c) for c in big.reshape(-1, 3)} == {NODATA_RGB, (255, 255, 255)}
    assert np.abs(img[2, 2].astype(int) - img[2, 10].astype(int)).sum() > 100


def test_main_job_on_the_synthetic_scene(tmp_path, tiny_weights):
    # the README's first command, with a tiny model and scene
    out = tmp_path / "out" / "embeddings.zarr"
    code = main(["embed", "--level", "patch", "--out", str(out), "--model", "terrafm-tiny",
                 "--weights", tiny_weights, "--synthetic-size", "96", "--tile", "64",
                 "--no-progress", "-q"])
    assert code == 0
    back = xr.open_zarr(out, decode_coords="all")["embeddings"]
    assert back.shape == (2, 32, 6, 6) and back.rio.crs is not None
    assert np.isfinite(back.values).all(axis=1).mean() > 0.5  # the orbit-edge wedge is NaN
    img = np.asarray(Image.open(tmp_path / "out" / "embeddings_preview.png"))
    assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
