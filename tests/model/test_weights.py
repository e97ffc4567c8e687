"""Weight loading: formats, prefixes, mismatches, unsafe pickles, hub offline, hashes."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from xterrafm.errors import WeightsError
from xterrafm.models import FUSION_PREFIX, TerraFM
from xterrafm.weights import (
    UnsafeWeightsError,
    WeightsMismatchError,
    convert_weights,
    load_model,
    state_dict_sha256,
)


def _published_sd(seed: int = 3) -> dict[str, torch.Tensor]:
    """A terrafm-tiny state_dict without fusion keys (like the published checkpoint)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TerraFM("terrafm-tiny")
    return {k: v for k, v in model.state_dict().items() if not k.startswith(FUSION_PREFIX)}


def _assert_loaded(model: TerraFM, sd: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(own[k], v), k


def test_random_init_is_deterministic_and_in_eval_mode():
    rng_before = torch.random.get_rng_state()
    a = load_model("terrafm-tiny")
    b = load_model("terrafm-tiny")
    c = load_model("terrafm-tiny", seed=1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    assert not a.training
    assert a.config.name == "terrafm-tiny"
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert len(a.weights_sha256) == 64
    assert a.weights_sha256 == state_dict_sha256(a.state_dict())


def test_pth_round_trip_with_prefixes_and_hashes(tmp_path: Path):
    sd = _published_sd()
    # a DINO-style checkpoint: teacher/student, backbone. and module. prefixes, a head
    ckpt = {
        "teacher": {**{f"module.backbone.{k}": v for k, v in sd.items()},
                    "module.head.last_layer.weight": torch.zeros(3, 4)},
        "student": {f"module.backbone.{k}": v + 1 for k, v in sd.items()},
        "epoch": 7,
    }
    pth = tmp_path / "dino.pth"
    torch.save(ckpt, pth)
    with pytest.warns(UserWarning, match="fusion"):
        model = load_model("terrafm-tiny", weights=pth)
    _assert_loaded(model, sd)
    assert not model.training

    dst = tmp_path / "tiny.safetensors"
    with pytest.warns(UserWarning, match="fusion"):
        digest = convert_weights(pth, dst)
        again = load_model("terrafm-tiny", weights=dst)
    _assert_loaded(again, sd)
    assert digest == model.weights_sha256 == again.weights_sha256 == state_dict_sha256(sd)
    import hashlib

    assert hashlib.sha256(dst.read_bytes()).hexdigest() == digest
    with pytest.raises(FileExistsError):
        convert_weights(pth, dst)
    with pytest.raises(ValueError, match="safetensors"):
        convert_weights(pth, tmp_path / "x.pth")


def test_plain_state_dict_with_all_keys_loads_silently(tmp_path: Path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        full = TerraFM("terrafm-tiny").state_dict()
    path = tmp_path / "full.safetensors"
    save_file(dict(full), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model("terrafm-tiny", weights=path)
    _assert_loaded(model, dict(full))


def test_mismatches_are_refused_with_names(tmp_path: Path):
    sd = _published_sd()
    missing = {k: v for k, v in sd.items() if k != "blocks.2.attn.qkv.weight"}
    with pytest.raises(WeightsMismatchError, match=r"missing keys: blocks\.2\.attn\.qkv\.weight"):
        load_model("terrafm-tiny", weights=missing)
    extra = {**sd, "decoder.weight": torch.zeros(2)}
    with pytest.raises(WeightsMismatchError, match=r"unexpected keys: decoder\.weight"):
        load_model("terrafm-tiny", weights=extra)
    shaped = {**sd, "pos_embed": torch.zeros(1, 50, 32)}
    with pytest.raises(WeightsMismatchError, match="pos_embed"):
        load_model("terrafm-tiny", weights=shaped)
    with pytest.raises(WeightsMismatchError, match="terrafm-b"):
        load_model("terrafm-b", weights=sd)  # tiny weights into B: mis-shaped


def test_bad_files(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_model("terrafm-tiny", weights=tmp_path / "nope.pth")
    odd = tmp_path / "w.npz"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown weights format"):
        load_model("terrafm-tiny", weights=odd)


class _Exploit:
    """Unpickling this creates a file: stands in for arbitrary code execution."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_refused_and_runs_nothing(tmp_path: Path, writer: str):
    target = tmp_path / "pwned.txt"
    payload = {"cls_token": torch.zeros(1, 1, 32), "evil": _Exploit(str(target))}
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    assert not target.exists()
    with pytest.raises(UnsafeWeightsError, match="arbitrary code|refusing"):
        load_model("terrafm-tiny", weights=path)
    with pytest.raises(UnsafeWeightsError):
        convert_weights(path, tmp_path / "out.safetensors")
    assert not target.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_hf_offline_gives_instructions(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"weights='/path/to/TerraFM-B\.pth'") as info:
        load_model("terrafm-b", weights="hf", cache_dir=tmp_path / "hf-cache")
    assert "MBZUAI/TerraFM" in str(info.value)
    with pytest.raises(ValueError, match="no published weights"):
        load_model("terrafm-l", weights="hf")


def test_hf_uses_cached_file_offline(tmp_path: Path, monkeypatch):
    """A checkpoint already in the hub cache loads offline (cache laid out as the hub does)."""
    sd = _published_sd()
    cache = tmp_path / "hub"
    snap = cache / "models--MBZUAI--TerraFM" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (cache / "models--MBZUAI--TerraFM" / "refs").mkdir()
    (cache / "models--MBZUAI--TerraFM" / "refs" / "main").write_text("a" * 40)
    # tiny weights under the published name: the variant check then refuses them for B,
    # which proves the cached file was found and read.
    torch.save(sd, snap / "TerraFM-B.pth")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMismatchError, match="terrafm-b"):
        load_model("terrafm-b", weights="hf", cache_dir=cache)


def test_device_and_precision_arguments():
    model = load_model("terrafm-tiny", device="cpu", precision="bf16")
    assert model.precision == "bf16"
    assert next(model.parameters()).device.type == "cpu"


def test_corrupt_file_is_a_value_error_not_unsafe(tmp_path: Path):
    good = tmp_path / "good.pth"
    torch.save(_published_sd(), good)
    path = tmp_path / "broken.pth"
    path.write_bytes(good.read_bytes()[:5000])  # truncated zip archive
    with pytest.raises(ValueError, match="cannot read") as info:
        load_model("terrafm-tiny", weights=path)
    assert not isinstance(info.value, UnsafeWeightsError)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_streamed_hash_equals_the_safetensors_file_hash(dtype) -> None:
    # The streamed digest must equal sha256 of safetensors' own serialisation, whatever the
    # names, shapes (scalars, empty tensors) and the float dtype; mixed dtypes fall back.
    import hashlib

    from safetensors.torch import save

    from xterrafm.weights import state_dict_sha256

    g = torch.Generator().manual_seed(0)
    sd = {"blocks.1.w": torch.randn(3, 2, generator=g), "a.x": torch.randn(5, generator=g),
          "empty": torch.zeros(0), "scalar": torch.tensor(1.5), "Z": torch.randn(7, generator=g)}
    sd = {k: v.to(dtype) for k, v in sd.items()}
    assert state_dict_sha256(sd) == hashlib.sha256(save(sd)).hexdigest()
    mixed = {**sd, "count": torch.arange(3)}
    assert state_dict_sha256(mixed) == hashlib.sha256(save(mixed)).hexdigest()


def test_loading_a_state_dict_copies_it_and_seeds_missing_fusion_keys() -> None:
    from xterrafm.weights import load_model

    src = load_model("terrafm-tiny", seed=3)
    published = {k: v for k, v in src.state_dict().items() if not k.startswith(FUSION_PREFIX)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = load_model("terrafm-tiny", weights=published, seed=7)
        b = load_model("terrafm-tiny", weights=published, seed=7)
    for k, v in a.state_dict().items():
        assert v.device.type == "cpu" and v.dtype == torch.float32
        assert torch.equal(v, b.state_dict()[k])  # fresh fusion values are seeded
        if k in published:
            assert torch.equal(v, published[k])
            assert v.data_ptr() != published[k].data_ptr()  # never shares the caller's storage
    first = next(iter(published))
    before = published[first].clone()
    with torch.no_grad():
        a.state_dict()[first].add_(1.0)
    assert torch.equal(published[first], before)


class _SystemCall:
    """Unpickling this would run a shell command (a module torch's unpickler blocks)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_blocked_module_in_a_checkpoint_is_unsafe_without_torch_advice(tmp_path: Path,
                                                                      writer: str):
    # torch reports a blocked module (posix.system) without its "WeightsUnpickler error:"
    # prefix and with advice to retry with weights_only=False; neither may reach the user.
    target = tmp_path / "pwned.txt"
    payload = {"cls_token": torch.zeros(1, 1, 32), "evil": _SystemCall(str(target))}
    path = tmp_path / "evil-zip.pth"
    if writer == "torch.save":
        torch.save(payload, path)  # zip format
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)  # the protocol torch's unpickler reads
    with pytest.raises(UnsafeWeightsError) as info:
        load_model("terrafm-tiny", weights=path)
    message = str(info.value)
    # names the object refused: the blocked call, or (legacy format) the first disallowed global
    refused = f"{os.system.__module__}.system" if writer == "torch.save" else "_load_from_bytes"
    assert str(path) in message and refused in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not target.exists()


def test_truncated_safetensors_names_the_file(tmp_path: Path):
    good = tmp_path / "good.safetensors"
    convert_weights(_published_sd(), good)
    for name, cut in (("half.safetensors", good.stat().st_size // 2), ("header.safetensors", 20)):
        path = tmp_path / name
        path.write_bytes(good.read_bytes()[:cut])
        with pytest.raises(WeightsError, match=name) as info:
            load_model("terrafm-tiny", weights=path)
        assert "safetensors" in str(info.value)


def test_the_patch_size_tells_tiny_variants_apart(tmp_path: Path):
    """terrafm-tiny and terrafm-tiny-p8 share width and depth; a checkpoint's stem shape picks
    the variant, and loading one as the other is refused naming the stem."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        p8 = TerraFM("terrafm-tiny-p8")
    src = tmp_path / "p8.pth"
    torch.save(p8.state_dict(), src)
    convert_weights(src, tmp_path / "p8.safetensors")  # variant inferred from the tensors
    model = load_model("tiny-p8", weights=tmp_path / "p8.safetensors")
    assert model.config.patch_size == 8
    with torch.no_grad():
        assert model(torch.zeros(1, 12, 32, 32), modality="s2_l2a").shape == (1, 32)
    convert_weights(_published_sd(), tmp_path / "p16.safetensors")
    assert load_model("terrafm-tiny", weights=tmp_path / "p16.safetensors").config.patch_size == 16
    with pytest.raises(WeightsMismatchError, match="conv2d_s2_l2a"):
        load_model("terrafm-tiny", weights=tmp_path / "p8.safetensors")
