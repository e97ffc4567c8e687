"""SOURCE classification, STAC filtering and the split of an area into one cube per CRS."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pystac
import pytest

from xterrafm.batch.job import store_paths
from xterrafm.batch.sources import (
    SourceError,
    classify_sources,
    crs_group_name,
    modality_from_collection,
)
from xterrafm.io.stac_calibration import group_items_by_crs


def _item(name: str, epsg: int | None, lon: float, when: datetime) -> pystac.Item:
    bbox = [lon, 45.0, lon + 0.5, 45.5]
    geom = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]],
                                                [bbox[2], bbox[3]], [bbox[0], bbox[3]],
                                                [bbox[0], bbox[1]]]]}
    props = {} if epsg is None else {"proj:code": f"EPSG:{epsg}"}
    return pystac.Item(name, geom, bbox, when, props, collection="sentinel-2-l2a")


def test_classify_sources(tmp_path: Path) -> None:
    tif = tmp_path / "B02.tif"
    tif.write_bytes(b"x")
    (tmp_path / "cube.zarr").mkdir()
    assert classify_sources(["https://earth-search.aws.element84.com/v1"]).kind == "stac-api"
    assert classify_sources(["https://example.com/catalog.json"]).kind == "stac-static"
    assert classify_sources([str(tif), str(tif)]).kind == "geotiff"
    assert classify_sources([str(tmp_path / "cube.zarr")]).kind == "zarr"
    with pytest.raises(SourceError, match="does not exist"):
        classify_sources([str(tmp_path / "nope.json")])
    with pytest.raises(SourceError, match="all be GeoTIFFs"):
        classify_sources([str(tif), str(tmp_path / "cube.zarr")])
    with pytest.raises(SourceError, match="cannot tell"):
        classify_sources(["scene.nc"])


def test_group_items_by_utm_zone() -> None:
    t = datetime(2024, 6, 10, tzinfo=timezone.utc)
    items = [_item("a", 32632, 11.0, t), _item("b", 32633, 15.0, t),
             _item("c", 32632, 11.5, t), _item("d", None, 15.5, t)]
    groups = group_items_by_crs(items)
    assert list(groups) == ["EPSG:32632", "EPSG:32633", None]
    assert [i.id for i in groups["EPSG:32632"]] == ["a", "c"]
    assert crs_group_name("EPSG:32633") == "EPSG_32633"


def test_modality_from_collection() -> None:
    assert modality_from_collection("sentinel-2-l2a") == "s2_l2a"
    assert modality_from_collection("sentinel-2-l1c") == "s2_l1c"
    assert modality_from_collection("sentinel-1-rtc") == "s1"
    assert modality_from_collection("landsat-c2-l2") is None


def test_store_paths_one_group_per_crs(tmp_path: Path) -> None:
    out = tmp_path / "emb.zarr"
    assert store_paths(out, ["EPSG:32632"]) == {"EPSG:32632": (str(out), None)}
    multi = store_paths(out, ["EPSG:32632", "EPSG:32633"])
    assert multi["EPSG:32633"] == (str(out / "EPSG_32633"), "EPSG_32633")
