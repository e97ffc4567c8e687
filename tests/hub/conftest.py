"""Fixtures of the hub tests: a loopback Hugging Face Hub, an isolated cache, checkpoints.

Every test here talks to 127.0.0.1 only: ``HF_ENDPOINT`` points at the loopback hub and
``HF_HUB_CACHE`` at a temporary folder; both are read by xterrafm when it calls
huggingface_hub, and inherited by the Dask workers these tests start.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import huggingface_hub.constants  # imported at collection, with the session's environment
import pytest
import torch

_HELPER = Path(__file__).with_name("loopback_hub.py")


def _load_helper():
    name = "xterrafm_tests_loopback_hub"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _HELPER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


loopback = _load_helper()


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """Environment of a hub test: cache under tmp_path, online, no telemetry, no proxy."""
    from xterrafm import hub

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("XTERRAFM_PUBLISHED_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: an offline session must not leak
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub.clear_caches()
    yield cache
    hub.clear_caches()


@pytest.fixture
def loopback_hub(hub_env, monkeypatch):
    """A running loopback hub (LFS-style redirects to a CDN origin), set as ``HF_ENDPOINT``."""
    with loopback.LoopbackHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def set_pins(monkeypatch):
    """``set_pins(variant={field: value}, ...)``: pin published weights through the documented
    hook, the ``XTERRAFM_PUBLISHED_WEIGHTS`` environment variable (workers inherit it)."""

    def set_(**variants: dict) -> None:
        monkeypatch.setenv("XTERRAFM_PUBLISHED_WEIGHTS", json.dumps(variants))

    return set_


def tiny_published_sd(seed: int = 3) -> dict[str, torch.Tensor]:
    """A terrafm-tiny state_dict without fusion keys (as the published checkpoint lacks them)."""
    from xterrafm.models import FUSION_PREFIX, TerraFM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TerraFM("terrafm-tiny")
    return {k: v for k, v in model.state_dict().items() if not k.startswith(FUSION_PREFIX)}


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """terrafm-tiny checkpoints as published (plain state_dict ``.pth``) and as safetensors,
    plus a second ``.pth`` of other values (another commit), under read-only names."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny-checkpoints")
    sd, other = tiny_published_sd(3), tiny_published_sd(4)
    torch.save(sd, root / "a.pth")
    torch.save(other, root / "b.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "a.safetensors"))
    return {"pth": root / "a.pth", "pth_b": root / "b.pth", "safetensors": root / "a.safetensors"}


@pytest.fixture(scope="session")
def layout_b(reference_tsv: Path) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of the published TerraFM-B checkpoint (the reference TSV)."""
    out = {}
    for line in reference_tsv.read_text().splitlines():
        if line and not line.startswith("#"):
            variant, key, shape = line.split("\t")
            if variant == "terrafm-b":
                out[key] = tuple(int(s) for s in shape.split("x"))
    return out
