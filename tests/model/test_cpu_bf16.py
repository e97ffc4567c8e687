"""Native bf16 on the CPU: the decision from torch's capabilities and the kernel's flags, the
environment override, and how ``precision="auto"`` resolves on each device."""

from __future__ import annotations

import pytest

from xterrafm.models import cpu_bf16 as hw
from xterrafm.models.precision import resolve_precision

SAPPHIRE = {"architecture": "x86_64", "avx512_f": True, "avx512_bf16": True, "amx_bf16": True}
COOPER = {"architecture": "x86_64", "avx512_f": True, "avx512_bf16": True, "amx_bf16": False}
ZEN3 = {"architecture": "x86_64", "avx2": True, "avx512_bf16": False, "amx_bf16": False}
SKYLAKE = {"architecture": "x86_64", "avx512_f": True, "avx512_bf16": False}

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu
"""


def test_cpuinfo_flags_are_those_of_the_first_processor():
    flags = hw.cpuinfo_flags(CPUINFO)
    assert {"avx512_bf16", "amx_bf16", "avx2"} <= flags
    assert "spectre_v1" not in flags  # the bugs line is not a flag
    assert hw.cpuinfo_flags("processor\t: 0\nFeatures\t: fp asimd bf16\n") is None


@pytest.mark.parametrize(("caps", "flags", "native"), [
    (SAPPHIRE, {"avx512_bf16", "amx_bf16"}, True),
    (COOPER, {"avx512_bf16"}, True),
    ({**ZEN3, "amx_bf16": True}, {"amx_bf16"}, True),  # AMX alone is enough
    (ZEN3, {"avx2"}, False),
    (SKYLAKE, {"avx512f", "avx512bw"}, False),  # AVX-512 without BF16: emulated
    (COOPER, {"avx512f"}, False),  # torch sees it, the kernel does not list it
    (COOPER, None, True),  # no /proc/cpuinfo: torch's answer stands
])
def test_native_bf16_needs_avx512_bf16_or_amx_seen_by_torch_and_the_kernel(caps, flags, native):
    verdict = hw.native_bf16_verdict(caps, flags)
    assert verdict.native is native
    assert verdict.reason


def test_no_onednn_or_not_x86_is_not_native():
    assert not hw.native_bf16_verdict(SAPPHIRE, {"avx512_bf16"}, onednn=False).native
    arm = {"architecture": "aarch64", "bf16": True, "sve_bf16": True}
    verdict = hw.native_bf16_verdict(arm, None)
    assert not verdict.native and "aarch64" in verdict.reason


def test_environment_override_wins_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv(hw.ENV_OVERRIDE, "1")
    assert hw.cpu_bf16().native is True and hw.ENV_OVERRIDE in hw.cpu_bf16().reason
    monkeypatch.setenv(hw.ENV_OVERRIDE, "no")
    assert hw.cpu_bf16().native is False
    monkeypatch.setenv(hw.ENV_OVERRIDE, "")
    assert hw.env_override() is None
    monkeypatch.setenv(hw.ENV_OVERRIDE, "maybe")
    with pytest.raises(ValueError, match=hw.ENV_OVERRIDE):
        hw.cpu_bf16()


def test_detection_here_agrees_with_the_kernel_flags(monkeypatch):
    monkeypatch.delenv(hw.ENV_OVERRIDE, raising=False)
    verdict = hw.cpu_bf16()
    flags = hw.cpuinfo_flags()
    if verdict.native and flags is not None:
        assert set(flags) & set(hw.NATIVE_BF16_FLAGS), verdict.reason
    if flags is not None and not set(flags) & set(hw.NATIVE_BF16_FLAGS):
        assert not verdict.native, verdict.reason


@pytest.mark.parametrize(("precision", "device", "cpu_bf16", "want"), [
    ("auto", "cuda", None, "bf16"),
    ("auto", "cuda:1", False, "bf16"),
    ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "fp32"),
    ("auto", "mps", True, "fp32"),
    ("bfloat16", "cpu", False, "bf16"),  # forced, even where it is emulated
    ("fp32", "cuda", None, "fp32"),
    ("fp16", "cpu", True, "fp16"),
])
def test_resolve_precision(precision, device, cpu_bf16, want):
    assert resolve_precision(precision, device, cpu_bf16) == want


def test_resolve_precision_on_cpu_asks_the_detection(monkeypatch):
    monkeypatch.setenv(hw.ENV_OVERRIDE, "1")
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setenv(hw.ENV_OVERRIDE, "0")
    assert resolve_precision("auto", "cpu") == "fp32"
