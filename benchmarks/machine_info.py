"""One line describing the machine a benchmark ran on, for its report.

Imported by the benchmark scripts as ``from machine_info import describe_machine`` (a script's
own folder is first on ``sys.path`` when it runs as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The vector features that decide the model's speed and ``precision="auto"``.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def vector_flags() -> str:
    """Which of :data:`VECTOR_FLAGS` ``/proc/cpuinfo`` lists (``"flags ?"`` when unknown)."""
    from xterrafm.models.cpu_bf16 import cpuinfo_flags

    have = cpuinfo_flags()
    if have is None:
        return "flags ?"
    return "flags " + (" ".join(f for f in VECTOR_FLAGS if f in have) or "-")


def describe_machine(**versions: str) -> str:
    """``"<cpu model>, <n> cores, flags ..., name version, ..."`` with the given versions."""
    parts = [cpu_model(), f"{os.cpu_count()} cores", vector_flags()]
    parts += [f"{name} {version}" for name, version in versions.items()]
    return ", ".join(parts)
