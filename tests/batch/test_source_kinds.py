"""``xterrafm embed`` reads every SOURCE kind: STAC ItemCollection, GeoTIFF files, Zarr cube."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from xterrafm.cli import EXIT_OK, EXIT_STORE_MISMATCH, EXIT_USAGE, main
from xterrafm.io import load_stac, write_zarr_cube

TINY = ["--model", "terrafm-tiny", "--tile", "32", "--cluster", "threads", "--no-progress",
        "--no-preview", "-q"]


def _emb(store: Path) -> xr.DataArray:
    return xr.open_zarr(store, decode_coords="all", consolidated=False)["embeddings"]


def test_zarr_cube_source_equals_stac_source(batch_scene, tmp_path: Path) -> None:
    items = str(batch_scene.item_collections["s2_l2a"])
    cube_store = tmp_path / "cube.zarr"
    write_zarr_cube(load_stac(items, modality="s2_l2a"), cube_store)

    assert main(["embed", items, "--out", str(tmp_path / "a.zarr"), *TINY]) == EXIT_OK
    assert main(["embed", str(cube_store), "--out", str(tmp_path / "b.zarr"), *TINY]) == EXIT_OK
    a, b = _emb(tmp_path / "a.zarr"), _emb(tmp_path / "b.zarr")
    assert a.sizes == b.sizes and a.sizes["time"] == 2
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-5)


def test_geotiff_band_files_in_glob_order(batch_scene, tmp_path: Path) -> None:
    # sorted() puts B8A after B12, as a shell glob does: files are matched by band name
    files = sorted(str(p) for p in batch_scene.band_paths["s2_l2a"][0].values())
    out = tmp_path / "tif.zarr"
    assert main(["embed", *files, "--out", str(out), *TINY]) == EXIT_USAGE  # no --modality
    assert main(["embed", *files, "--modality", "s2_l2a", "--out", str(out), *TINY]) == EXIT_OK
    emb = _emb(out)
    assert emb.rio.crs.to_epsg() == 32632
    assert emb.sizes["y"] == emb.sizes["x"] == 192 // 32
    assert np.isfinite(emb.values).all()


def test_rerun_with_other_settings_is_refused(batch_scene, tmp_path: Path, capsys) -> None:
    items = str(batch_scene.item_collections["s2_l2a"])
    out = tmp_path / "e.zarr"
    assert main(["embed", items, "--out", str(out), *TINY]) == EXIT_OK
    other = [a if a != "32" else "64" for a in TINY]
    assert main(["embed", items, "--out", str(out), *other]) == EXIT_STORE_MISMATCH
    assert "tile" in capsys.readouterr().err
    assert main(["embed", items, "--out", str(out), "--overwrite", *other]) == EXIT_OK
    assert _emb(out).attrs["tile"] == 64
