"""``xterrafm embed SOURCE --fuse-with SOURCE --fuse-modality s1``: a fused store from the shell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import xarray as xr

from xterrafm.cli import EXIT_OK, EXIT_USAGE, main

TINY = ["--model", "terrafm-tiny", "--tile", "64", "--cluster", "threads", "--no-progress",
        "--no-preview", "-q"]


def test_fused_store_from_two_stac_sources(synthetic_scene, tiny_weights, tmp_path):
    s2 = str(synthetic_scene.item_collections["s2_l2a"])
    s1 = str(synthetic_scene.item_collections["s1"])
    out = tmp_path / "fused.zarr"
    assert main(["embed", s2, "--modality", "s2_l2a", "--fuse-with", s1, "--fuse-modality",
                 "s1", "--weights", tiny_weights, "--out", str(out), *TINY]) == EXIT_OK
    emb = xr.open_zarr(out, decode_coords="all")["embeddings"]
    assert emb.attrs["modality"] == "s2_l2a+s1" and emb.attrs["pair_tolerance"] == "6D"
    assert emb.shape == (2, 32, 7, 7) and "" not in emb.attrs["paired_time_s1"]
    item = pystac.Item.from_file(str(tmp_path / "fused.stac-item.json"))
    assert item.properties["emb:runtime_parameters"]["modality"] == "s2_l2a+s1"
    linked = {Path(link.href).name for link in item.links if link.rel == "emb:source-data"}
    assert {"s2_l2a.json", "s1.json"} <= linked  # the sources of both modalities
    alone = tmp_path / "s2.zarr"
    assert main(["embed", s2, "--modality", "s2_l2a", "--weights", tiny_weights, "--out",
                 str(alone), *TINY]) == EXIT_OK
    s2_only = xr.open_zarr(alone, decode_coords="all")["embeddings"]
    assert np.nanmax(np.abs(emb.values - s2_only.values)) > 0.05  # the radar is in there


def test_fuse_options_are_checked_before_anything_runs(synthetic_scene, tmp_path):
    s2 = str(synthetic_scene.item_collections["s2_l2a"])
    out = tmp_path / "never.zarr"
    assert main(["embed", s2, "--fuse-modality", "s1", "--out", str(out), *TINY]) == EXIT_USAGE
    assert main(["embed", s2, "--modality", "s2_l2a", "--fuse-with", s2, "--out", str(out),
                 *TINY]) == EXIT_USAGE  # no modality for the second source
    assert main(["embed", s2, "--modality", "s2_l2a", "--fuse-with", s2, "--fuse-modality",
                 "s2_l2a", "--out", str(out), *TINY]) == EXIT_USAGE
    assert main(["embed", s2, "--pair-tolerance", "soon", "--out", str(out), *TINY]) == \
        EXIT_USAGE
    assert not out.exists()
