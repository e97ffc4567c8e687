"""weights="hf" through the hub's real file-resolve protocol, served on 127.0.0.1.

First download, cache hits, revision pinning, resumed transfers, and refusals of truncated,
corrupted, unpinned-content and pickled files.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from xterrafm_tests_loopback_hub import Fault, LoopbackHub  # tests/hub/loopback_hub.py

from xterrafm import hub
from xterrafm.errors import (
    UnsafeWeightsError,
    UsageError,
    WeightsDownloadError,
    WeightsError,
    WeightsMismatchError,
)
from xterrafm.weights import load_model

pytestmark = pytest.mark.requires_network_loopback  # a hub on 127.0.0.1

REPO = "MBZUAI/TerraFM"
TINY = "TerraFM-tiny.pth"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fusion keys absent, as published
        return load_model(*args, **kwargs)


def assert_weights(model, path: Path) -> None:
    sd = torch.load(path, weights_only=True)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def blobs(cache: Path) -> list[Path]:
    folder = cache / "models--MBZUAI--TerraFM" / "blobs"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_first_download_then_cache_hits(loopback_hub, hub_env, tiny_files, set_pins,
                                        monkeypatch):
    commit = loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    digest = sha256(tiny_files["pth"])
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY, "sha256": digest}})

    model = load_quietly("terrafm-tiny", weights="hf")
    assert_weights(model, tiny_files["pth"])
    assert model.weights_source == f"hf://{REPO}@{commit}/{TINY}"
    # the protocol: one HEAD on the hub's resolve URL, redirected to the CDN, one GET there
    heads = [r for r in loopback_hub.requests if r.origin == "hub"]
    assert [(r.method, r.path) for r in heads] == [("HEAD", f"/{REPO}/resolve/main/{TINY}")]
    assert len(loopback_hub.gets("cdn")) == 1
    assert [b.name for b in blobs(hub_env)] == [digest]  # stored under its SHA-256

    again = load_quietly("terrafm-tiny", weights="hf")  # cache hit: metadata only
    assert again.weights_sha256 == model.weights_sha256
    assert len(loopback_hub.gets("cdn")) == 1
    assert loopback_hub.count("HEAD", "hub") == 2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the cache alone, no request at all
    before = len(loopback_hub.requests)
    load_quietly("terrafm-tiny", weights="hf")
    assert len(loopback_hub.requests) == before


def test_pinned_commit_is_fetched_by_commit_and_then_never_asked_again(
        loopback_hub, tiny_files, set_pins):
    first = loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    loopback_hub.publish(REPO, {TINY: tiny_files["pth_b"]})  # main moves on to other values
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY, "revision": first,
                                 "sha256": sha256(tiny_files["pth"])}})
    model = load_quietly("terrafm-tiny", weights="hf")
    assert_weights(model, tiny_files["pth"])  # the pinned commit's file, not main's
    assert [r.path for r in loopback_hub.requests if r.origin == "hub"] == [
        f"/{REPO}/resolve/{first}/{TINY}"]
    before = len(loopback_hub.requests)
    load_quietly("terrafm-tiny", weights="hf")  # a cached commit needs no request
    assert len(loopback_hub.requests) == before


def test_a_file_other_than_the_pinned_one_is_refused(loopback_hub, hub_env, tiny_files,
                                                     set_pins):
    first = loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    second = loopback_hub.publish(REPO, {TINY: tiny_files["pth_b"]})
    # pinned by hash only: main now serves other bytes, intact but not the pinned ones
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY,
                                 "sha256": sha256(tiny_files["pth"])}})
    with pytest.raises(WeightsMismatchError, match="pin of terrafm-tiny expects"):
        load_model("terrafm-tiny", weights="hf")
    assert [b.name for b in blobs(hub_env)] == [sha256(tiny_files["pth_b"])]  # kept: intact
    # pinned by commit: a cached file of another commit is refused where it is read
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY, "revision": first}})
    other = hub_env / "models--MBZUAI--TerraFM" / "snapshots" / second / TINY
    assert other.exists()
    with pytest.raises(WeightsMismatchError, match=f"not the pinned revision {first}"):
        load_model("terrafm-tiny", weights=other)


def test_a_safetensors_file_in_the_repository(loopback_hub, tiny_files, set_pins):
    name = "TerraFM-tiny.safetensors"
    loopback_hub.publish(REPO, {name: tiny_files["safetensors"], TINY: tiny_files["pth"]})
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": name,
                                 "sha256": sha256(tiny_files["safetensors"])}})
    model = load_quietly("terrafm-tiny", weights="hf")
    assert_weights(model, tiny_files["pth"])
    assert model.weights_source.endswith(f"/{name}")


def test_a_truncated_transfer_is_refused_and_leaves_nothing(loopback_hub, hub_env, tiny_files,
                                                            set_pins):
    loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    digest = sha256(tiny_files["pth"])
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY}})
    loopback_hub.faults[digest] = Fault("truncate", 4096)
    with pytest.raises(WeightsDownloadError, match="Consistency check failed") as info:
        load_model("terrafm-tiny", weights="hf")
    assert isinstance(info.value, RuntimeError)  # as before: offline/unreachable is one too
    assert blobs(hub_env) == []  # no partial file to be taken for the checkpoint later
    load_quietly("terrafm-tiny", weights="hf")  # the next, intact transfer is accepted
    assert len(loopback_hub.gets("cdn")) == 2


def test_a_corrupted_transfer_is_refused_by_hash_and_dropped_from_the_cache(
        loopback_hub, hub_env, tiny_files, set_pins):
    loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    digest = sha256(tiny_files["pth"])
    # unpinned content: the check is against the SHA-256 the hub declares (X-Linked-Etag)
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY}})
    loopback_hub.faults[digest] = Fault("corrupt", 12345)
    with pytest.raises(WeightsMismatchError, match="declared .* truncated or corrupted"):
        load_model("terrafm-tiny", weights="hf")
    assert blobs(hub_env) == []  # the bad copy is gone, so the next call downloads again
    model = load_quietly("terrafm-tiny", weights="hf")
    assert_weights(model, tiny_files["pth"])
    assert len(loopback_hub.gets("cdn")) == 2


def test_an_interrupted_transfer_is_resumed_with_a_range_request(loopback_hub, tmp_path,
                                                                 set_pins):
    # huggingface_hub writes in 10 MiB chunks and resumes after the last one it wrote: the
    # file must span several chunks for a resume to start past 0
    chunk = 10 * 2**20
    big = tmp_path / "big.safetensors"
    big.write_bytes(hashlib.sha256(b"seed").digest() * (chunk * 3 // 32 + 1000))
    loopback_hub.publish(REPO, {"big.safetensors": big})
    digest = sha256(big)
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": "big.safetensors",
                                 "sha256": digest}})
    loopback_hub.faults[digest] = Fault("drop", 2 * chunk + 12345)  # connection lost mid-file
    path = hub.download_published_weights("terrafm-tiny")
    assert path.read_bytes() == big.read_bytes()
    gets = loopback_hub.gets("cdn")
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    assert gets[1].headers["range"] == f"bytes={2 * chunk}-"  # only the rest was asked for


def test_a_cached_file_changed_on_disk_is_refused(loopback_hub, hub_env, tiny_files, set_pins):
    loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY}})
    path = hub.download_published_weights("terrafm-tiny")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.resolve().write_bytes(bytes(data))
    with pytest.raises(WeightsMismatchError, match="truncated or corrupted"):
        load_model("terrafm-tiny", weights=path)


def test_a_snapshot_path_from_another_machine_is_fetched_at_its_commit(
        loopback_hub, tmp_path, tiny_files, set_pins, monkeypatch):
    """What a worker does with a client's cache path its file system lacks."""
    first = loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    loopback_hub.publish(REPO, {TINY: tiny_files["pth_b"]})  # main has moved on
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY}})
    elsewhere = (tmp_path / "client-machine" / "models--MBZUAI--TerraFM" / "snapshots" / first
                 / TINY)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "worker-machine"))
    model = load_quietly("terrafm-tiny", weights=elsewhere)
    assert_weights(model, tiny_files["pth"])  # that commit's file, not main's
    assert [r.path for r in loopback_hub.requests if r.origin == "hub"] == [
        f"/{REPO}/resolve/{first}/{TINY}"]
    assert hub.stats()["fetched_elsewhere"] == 1
    assert (tmp_path / "worker-machine" / "models--MBZUAI--TerraFM" / "snapshots" / first
            / TINY).exists()


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_from_the_hub_is_never_executed(loopback_hub, tmp_path, set_pins):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 32), "x": _Exploit(str(target))}, evil)
    loopback_hub.publish(REPO, {TINY: evil})
    # even a pinned (trusted-looking) file is read with weights_only=True
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY, "sha256": sha256(evil)}})
    with pytest.raises(UnsafeWeightsError):
        load_model("terrafm-tiny", weights="hf")
    assert not target.exists()


def test_files_served_without_a_redirect(hub_env, tiny_files, set_pins, monkeypatch):
    with LoopbackHub(lfs=False) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.publish(REPO, {TINY: tiny_files["pth"]})
        set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY,
                                     "sha256": sha256(tiny_files["pth"])}})
        assert_weights(load_quietly("terrafm-tiny", weights="hf"), tiny_files["pth"])
        assert server.count("GET", "hub") == 1 and server.count("GET", "cdn") == 0


def test_hub_errors_name_the_repository_and_say_what_to_do(loopback_hub, tiny_files, set_pins):
    loopback_hub.publish(REPO, {TINY: tiny_files["pth"]})
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": "missing.pth"}})
    with pytest.raises(WeightsDownloadError, match=r"EntryNotFound.*weights='/path/to/missing"):
        load_model("terrafm-tiny", weights="hf")
    set_pins(**{"terrafm-tiny": {"repo_id": REPO, "filename": TINY, "revision": "v9"}})
    with pytest.raises(WeightsDownloadError, match="RevisionNotFound"):
        load_model("terrafm-tiny", weights="hf")


def test_a_cluster_is_told_before_any_graph_when_the_file_does_not_fit(
        loopback_hub, tiny_files):
    from odc.geo.geobox import GeoBox

    from xterrafm.embedding.plan import make_plan
    from xterrafm.embedding.settings import EmbedSettings

    # tiny weights under the published name: refused for terrafm-b when "hf" is resolved
    loopback_hub.publish(REPO, {"TerraFM-B.pth": tiny_files["pth"]})
    with pytest.raises(WeightsMismatchError, match="terrafm-b"):
        hub.resolve_weights_for_cluster("hf", "terrafm-b")
    gbox = GeoBox.from_bbox((600000, 5100000, 600640, 5100640), "EPSG:32632", resolution=10)
    with pytest.raises(WeightsMismatchError, match="terrafm-b"):  # as an embed plan is made
        make_plan(EmbedSettings(model="terrafm-b", weights="hf"), modality="s2_l2a",
                  geobox=gbox, chunks=((64,), (64,)))
    with pytest.raises(WeightsError, match="no published weights for 'terrafm-tiny'"):
        hub.resolve_weights_for_cluster("hf", "terrafm-tiny")


def test_the_published_vit_b_layout_loads_through_the_hub(loopback_hub, tmp_path, layout_b):
    """The built-in pin (MBZUAI/TerraFM, TerraFM-B.pth) with a random checkpoint of exactly the
    published layout (164 fp32 tensors): weights="hf" loads it strictly into terrafm-b."""
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in layout_b.items()}
    path = tmp_path / "TerraFM-B.pth"
    torch.save(sd, path)
    del sd
    commit = loopback_hub.publish(REPO, {"TerraFM-B.pth": path})
    pin = hub.published_weights("terrafm-b")
    assert (pin.repo_id, pin.filename) == (REPO, "TerraFM-B.pth")
    with pytest.warns(UserWarning, match="fusion"):
        model = load_model("terrafm-b", weights="hf")
    assert model.weights_source == f"hf://{REPO}@{commit}/TerraFM-B.pth"
    assert len(model.state_dict()) > len(layout_b)  # the fusion keys were added fresh
    ref = torch.load(path, weights_only=True, mmap=True)
    for key in ("pos_embed", "patch_embed.conv2d_s1.weight", "blocks.11.mlp.fc2.weight"):
        assert torch.equal(model.state_dict()[key], ref[key])


def test_pin_override_hook_is_checked(hub_env, tmp_path, monkeypatch):
    monkeypatch.setenv(hub.OVERRIDE_ENV, "{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        hub.published_weights("terrafm-b")
    monkeypatch.setenv(hub.OVERRIDE_ENV, json.dumps({"terrafm-b": {"sha": "ab"}}))
    with pytest.raises(UsageError, match="unknown fields"):
        hub.published_weights("terrafm-b")
    monkeypatch.setenv(hub.OVERRIDE_ENV, json.dumps({"terrafm-b": {"sha256": "xyz"}}))
    with pytest.raises(UsageError, match="64 hex digits"):
        hub.published_weights("terrafm-b")
    monkeypatch.setenv(hub.OVERRIDE_ENV, json.dumps({"terrafm-tiny": {"filename": "x.pth"}}))
    with pytest.raises(UsageError, match="repo_id"):
        hub.published_weights("terrafm-tiny")
    good = tmp_path / "pins.json"
    good.write_text(json.dumps({"terrafm-b": {"revision": "a" * 40, "sha256": "AB" * 32}}))
    monkeypatch.setenv(hub.OVERRIDE_ENV, str(good))
    pinned = hub.published_weights("terrafm-b")
    assert (pinned.repo_id, pinned.revision, pinned.sha256) == (REPO, "a" * 40, "ab" * 32)
    monkeypatch.delenv(hub.OVERRIDE_ENV)
    assert hub.published_weights("terrafm-b") == hub.PUBLISHED["terrafm-b"]
