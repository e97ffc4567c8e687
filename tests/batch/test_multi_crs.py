"""An area spanning two UTM zones goes to one Zarr group per CRS inside the output store."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
import zarr
from pystac.utils import make_absolute_href

from xterrafm.batch.job import CRS_GROUPS_ATTR
from xterrafm.cli import EXIT_OK, main
from xterrafm.datasets import make_synthetic_scene
from xterrafm.errors import NotAStoreError
from xterrafm.store import open_embeddings


def _items_with_absolute_hrefs(collection_file: Path) -> list[dict]:
    items = []
    for item in pystac.ItemCollection.from_file(str(collection_file)):
        for asset in item.assets.values():
            asset.href = make_absolute_href(asset.href, str(collection_file))
        items.append(item.to_dict())
    return items


def _figures(summary: str) -> dict[str, int]:
    out = {}
    for line in summary.splitlines():
        label, _, value = line.strip().partition(":")
        if value.strip().isdigit():
            out[label] = int(value)
    return out


def test_two_utm_zones_give_two_groups_and_a_rerun_resumes(tmp_path: Path, capsys) -> None:
    west = make_synthetic_scene(tmp_path / "z32", width=64, height=64, n_dates=1,
                                crs="EPSG:32632", modalities=("s2_l2a",))
    east = make_synthetic_scene(tmp_path / "z33", width=96, height=64, n_dates=1, seed=1,
                                crs="EPSG:32633", origin=(300000.0, 5100000.0),
                                modalities=("s2_l2a",))
    features = (_items_with_absolute_hrefs(west.item_collections["s2_l2a"])
                + _items_with_absolute_hrefs(east.item_collections["s2_l2a"]))
    source = tmp_path / "two_zones.json"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "out" / "emb.zarr"
    args = ["embed", str(source), "--out", str(out), "--cluster", "threads",
            "--model", "terrafm-tiny", "--tile", "32", "--no-progress"]

    assert main(args) == EXIT_OK
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs[CRS_GROUPS_ATTR] == ["EPSG_32632", "EPSG_32633"]
    for group, epsg, nx in (("EPSG_32632", 32632, 2), ("EPSG_32633", 32633, 3)):
        for consolidated in (None, True, False):
            with warnings.catch_warnings():  # the root's consolidated metadata lists the groups
                warnings.simplefilter("error")
                emb = xr.open_zarr(out, group=group, decode_coords="all",
                                   consolidated=consolidated)["embeddings"]
        assert emb.rio.crs.to_epsg() == epsg
        assert emb.sizes["x"] == nx and emb.sizes["y"] == 2
        valid = np.isfinite(emb.values).all(axis=1)  # the scene's nodata wedge may empty one
        assert valid.sum() >= valid.size - 1
        assert (out.parent / f"emb_{group}_preview.png").exists()
    # the root describes its groups in the geo-embeddings convention, in the groups' format
    assert root.metadata.zarr_format == 2
    assert root.attrs["geoemb:spatial_layout"] == "crs_groups"
    assert root.attrs["geoemb:dimensions"] == 32 and root.attrs["geoemb:type"] == "chip"
    # one STAC Item per group next to the store, linking to the items it was read from
    for group in ("EPSG_32632", "EPSG_32633"):
        item = pystac.Item.from_file(str(out.parent / f"emb_{group}.stac-item.json"))
        assert Path(item.assets["embeddings"].get_absolute_href()) == out / group
        sources = [link.href for link in item.links if link.rel == "emb:source-data"]
        assert sources and all(h.endswith("two_zones.json") for h in sources)
    with pytest.raises(NotAStoreError, match="EPSG_32633"):
        open_embeddings(out)
    assert open_embeddings(out, group="EPSG_32633").rio.crs.to_epsg() == 32633
    first = _figures(capsys.readouterr().out)
    assert first["windows embedded"] + first["skipped as empty"] == 4 + 6

    # a rerun finds every block of both groups finished
    assert main(args) == EXIT_OK
    second = _figures(capsys.readouterr().out)
    assert second["already done (resumed)"] == 10 and second["windows embedded"] == 0
