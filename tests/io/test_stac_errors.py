"""A truncated STAC document is refused naming it: a local ItemCollection, an item of a static
catalog, a document over HTTP, and through the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.http_server import serve_http
from xterrafm.errors import EXIT_USAGE, InputError
from xterrafm.io.stac import load_stac


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _stac_copy(scene, tmp_path: Path) -> Path:
    dst = tmp_path / "stac"
    shutil.copytree(Path(scene.root) / "stac", dst)
    shutil.copytree(Path(scene.root) / "data", tmp_path / "data")
    return dst


def test_truncated_item_collection_file_is_named(synthetic_scene, tmp_path):
    stac = _stac_copy(synthetic_scene, tmp_path)
    path = stac / "item_collections" / "s2_l2a.json"
    _truncate(path)
    with pytest.raises(InputError, match="s2_l2a.json is not valid JSON"):
        load_stac(path, modality="s2_l2a")


def test_truncated_item_of_a_static_catalog_is_named(synthetic_scene, tmp_path):
    stac = _stac_copy(synthetic_scene, tmp_path)
    catalog = stac / "catalog.json"
    items = sorted(p for p in stac.rglob("*.json")
                   if json.loads(p.read_text()).get("type") == "Feature")
    assert items, "the synthetic catalog has item files"
    _truncate(items[0])
    with pytest.raises(InputError, match=items[0].name):
        load_stac(catalog, modality="s2_l2a")


@pytest.mark.requires_network_loopback
def test_truncated_document_over_http_is_named(synthetic_scene, tmp_path):
    stac = _stac_copy(synthetic_scene, tmp_path)
    _truncate(stac / "item_collections" / "s2_l2a.json")
    with serve_http(tmp_path) as server:
        url = f"{server.url}/stac/item_collections/s2_l2a.json"
        with pytest.raises(InputError, match=r"item_collections/s2_l2a\.json is not valid JSON"):
            load_stac(url, modality="s2_l2a")


@pytest.mark.timeout(120)
def test_command_line_names_the_truncated_file_and_exits_2(synthetic_scene, tmp_path):
    stac = _stac_copy(synthetic_scene, tmp_path)
    path = stac / "item_collections" / "s2_l2a.json"
    _truncate(path)
    out = tmp_path / "emb.zarr"
    run = subprocess.run([sys.executable, "-m", "xterrafm", "embed", str(path), "--out", str(out),
                          "--model", "terrafm-tiny"], capture_output=True, text=True,
                         timeout=110)
    assert run.returncode == EXIT_USAGE, run.stderr
    assert "s2_l2a.json is not valid JSON" in run.stderr
    assert not out.exists()
