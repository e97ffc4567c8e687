"""Whether bfloat16 is native *and* faster than fp32 on this CPU: ``precision="auto"`` on CPU.

Torch runs CPU autocast in bf16 through oneDNN. Native instructions are not enough; what
counts is whether they beat fp32 (docs/benchmarks.md, TerraFM-B forward passes on 2 cores):

* AMX-BF16 (Intel Sapphire Rapids and later): about 3x faster than fp32;
* AVX512-BF16 on AMD (a Zen 4 EPYC): about 3x faster by CPU time;
* AVX512-BF16 on an Intel CPU without AMX (here: an Emerald Rapids guest whose hypervisor
  withholds the AMX tiles): oneDNN runs native ``avx512_core_bf16`` kernels, and they are about
  1.5x *slower* than fp32 (measured; the likely reason is that these cores issue the bf16 dot
  product on one port where fp32 FMAs use two);
* neither: oneDNN emulates bf16, several times slower than fp32.

So ``"auto"`` takes bf16 on a CPU with AMX-BF16, or with AVX512-BF16 from AMD, and fp32
elsewhere (an Intel or unknown-vendor CPU with AVX512-BF16 alone included: fp32 is never the
slow choice there).

The decision uses what torch itself dispatches on, :func:`torch.cpu.get_capabilities` (cpuinfo's
CPUID query: ``avx512_bf16``, ``amx_bf16``) with oneDNN present
(:func:`torch.backends.mkldnn.is_available`), cross-checked against the flags the Linux kernel
reports in ``/proc/cpuinfo``: a feature the kernel does not list (a hypervisor or kernel that
withholds AVX-512 or the AMX tile state) is not used. Where ``/proc/cpuinfo`` cannot be read,
torch's answer stands alone. Other architectures (aarch64 BF16 and SVE-BF16) are not chosen
automatically: their speed has not been measured here; ``precision="bf16"`` forces bf16
anywhere.

The environment variable :data:`ENV_OVERRIDE` (``1``/``0``) overrides the detection in the
process that reads it (a worker whose operator knows better, and tests that need a given
answer on any CPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate

__all__ = ["ENV_OVERRIDE", "NATIVE_BF16_FLAGS", "Bf16Verdict", "cpu_bf16", "cpuinfo_flags",
           "cpuinfo_vendor", "env_override", "native_bf16_verdict"]

#: Environment variable that overrides the detection: ``1`` (native bf16) or ``0`` (not).
ENV_OVERRIDE = "XTERRAFM_CPU_BF16"

#: x86 features with which oneDNN runs bf16 matrix products natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: ``vendor_id`` of the CPUs whose AVX512-BF16 alone makes bf16 faster than fp32.
FAST_AVX512_BF16_VENDORS = ("AuthenticAMD",)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Bf16Verdict:
    """Whether bf16 is native here, and why.

    Attributes
    ----------
    native : bool
        True when bf16 matrix products run on native instructions that beat fp32.
    reason : str
        What decided it (for attrs, logs and error messages).
    """

    native: bool
    reason: str


def _cpuinfo_field(name: str, text: str | None) -> str | None:
    """The first processor's ``name`` field of ``/proc/cpuinfo`` (or of ``text``), or None."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpuinfo_flags(text: str | None = None) -> frozenset[str] | None:
    """The CPU feature flags of ``/proc/cpuinfo`` (the first processor's ``flags`` line).

    Parameters
    ----------
    text : str, optional
        Contents of a cpuinfo file (default: read ``/proc/cpuinfo``).

    Returns
    -------
    frozenset of str or None
        The flags, or None when there is no such file or no ``flags`` line (not Linux x86).
    """
    value = _cpuinfo_field("flags", text)
    return None if value is None else frozenset(value.split())


def cpuinfo_vendor(text: str | None = None) -> str | None:
    """The CPU vendor of ``/proc/cpuinfo`` (``GenuineIntel``, ``AuthenticAMD``), or None."""
    return _cpuinfo_field("vendor_id", text) or None


def env_override(environ: Mapping[str, str] | None = None) -> bool | None:
    """The value of :data:`ENV_OVERRIDE`: True, False, or None when unset or empty.

    Raises
    ------
    ValueError
        The variable holds something other than 1/0 (true/false, yes/no, on/off).
    """
    value = (os.environ if environ is None else environ).get(ENV_OVERRIDE, "").strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{ENV_OVERRIDE}={value!r}: expected 1 or 0 (native bf16 or not)")


def native_bf16_verdict(capabilities: Mapping[str, Any], flags: Iterable[str] | None, *,
                        onednn: bool = True, vendor: str | None = None) -> Bf16Verdict:
    """Decide from what torch reports and what the kernel lists (no detection here).

    Parameters
    ----------
    capabilities : mapping
        ``torch.cpu.get_capabilities()`` or the same keys (``architecture``, ``avx512_bf16``,
        ``amx_bf16``, ``cpu_name``...).
    flags : iterable of str or None
        ``/proc/cpuinfo`` flags (:func:`cpuinfo_flags`); None when unknown.
    onednn : bool
        Whether torch was built with oneDNN (``torch.backends.mkldnn.is_available()``).
    vendor : str, optional
        ``vendor_id`` of ``/proc/cpuinfo`` (:func:`cpuinfo_vendor`); when None, read from the
        capabilities' ``cpu_name`` ("AMD ..." or "Intel ...").

    Returns
    -------
    Bf16Verdict
        ``native`` is True where bf16 is both native and faster than fp32 (module docstring).
    """
    arch = str(capabilities.get("architecture", "")).lower()
    if arch not in ("x86_64", "x86", "amd64", "i386", "i686"):
        return Bf16Verdict(False, f"architecture {arch or 'unknown'}: bf16 is chosen "
                                  "automatically on x86 only")
    if not onednn:
        return Bf16Verdict(False, "torch has no oneDNN (mkldnn) backend")
    found = [f for f in NATIVE_BF16_FLAGS if capabilities.get(f)]
    if not found:
        return Bf16Verdict(False, "no avx512_bf16 or amx_bf16 (torch.cpu.get_capabilities)")
    if flags is None:
        listed, source = found, "torch; no /proc/cpuinfo to check"
    else:
        listed, source = [f for f in found if f in set(flags)], "torch and /proc/cpuinfo"
    if not listed:
        return Bf16Verdict(False, f"torch reports {', '.join(found)} but the kernel does not "
                                  "list it in /proc/cpuinfo")
    if "amx_bf16" in listed:
        return Bf16Verdict(True, f"{', '.join(listed)} ({source})")
    if vendor is None:
        name = str(capabilities.get("cpu_name", "")).lower()
        vendor = ("AuthenticAMD" if "amd" in name.split() else
                  "GenuineIntel" if "intel" in name.split() else None)
    if vendor in FAST_AVX512_BF16_VENDORS:
        return Bf16Verdict(True, f"avx512_bf16 on {vendor} ({source})")
    return Bf16Verdict(False, f"avx512_bf16 without amx_bf16 on {vendor or 'an unknown vendor'} "
                              f"({source}): bf16 is slower than fp32 there")


def cpu_bf16() -> Bf16Verdict:
    """Whether this process's CPU computes bf16 natively (:data:`ENV_OVERRIDE` first).

    Returns
    -------
    Bf16Verdict
    """
    forced = env_override()
    if forced is not None:
        return Bf16Verdict(forced, f"{ENV_OVERRIDE}={int(forced)}")
    with import_gate():
        import torch

    caps = dict(torch.cpu.get_capabilities())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""  # no file: no flags, no vendor
    return native_bf16_verdict(caps, cpuinfo_flags(text),
                               onednn=torch.backends.mkldnn.is_available(),
                               vendor=cpuinfo_vendor(text))
