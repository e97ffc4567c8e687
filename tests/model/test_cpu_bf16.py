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


ZEN4 = {**COOPER, "cpu_name": "AMD EPYC 9R14"}
EMERALD_NO_AMX = {**COOPER, "cpu_name": "Intel Xeon"}  # a guest without the AMX tiles


@pytest.mark.parametrize(("caps", "flags", "vendor", "native"), [
    (SAPPHIRE, {"avx512_bf16", "amx_bf16"}, "GenuineIntel", True),
    ({**ZEN3, "amx_bf16": True}, {"amx_bf16"}, None, True),  # AMX alone is enough
    (ZEN4, {"avx512_bf16"}, "AuthenticAMD", True),  # full-rate bf16 dot products
    (EMERALD_NO_AMX, {"avx512_bf16"}, "GenuineIntel", False),  # native, but slower than fp32
    (COOPER, {"avx512_bf16"}, None, False),  # AVX512-BF16 alone from an unknown vendor
    (ZEN4, None, None, True),  # no /proc/cpuinfo: torch's flags and CPU name stand
    (EMERALD_NO_AMX, None, None, False),
    (ZEN3, {"avx2"}, "AuthenticAMD", False),
    (SKYLAKE, {"avx512f", "avx512bw"}, "GenuineIntel", False),  # AVX-512 without BF16: emulated
    (ZEN4, {"avx512f"}, "AuthenticAMD", False),  # torch sees it, the kernel does not list it
])
def test_bf16_is_chosen_where_native_and_faster_than_fp32(caps, flags, vendor, native):
    verdict = hw.native_bf16_verdict(caps, flags, vendor=vendor)
    assert verdict.native is native
    assert verdict.reason
    if caps is EMERALD_NO_AMX:
        assert "slower than fp32" in verdict.reason and "GenuineIntel" in verdict.reason


def test_cpuinfo_vendor_is_that_of_the_first_processor():
    assert hw.cpuinfo_vendor(CPUINFO) == "GenuineIntel"
    assert hw.cpuinfo_vendor("processor\t: 0\nflags\t: fpu\n") is None


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
