"""What a run of the store writer cost: wall time, CPU time of the processes that computed it,
and the device it ran on (recorded in the store's STAC Item as ``emb:energy`` and
``xterrafm:cpu_time_s``).

CPU time is the user + system time of the dask worker processes (with a distributed client)
or of this process (dask's local schedulers) between :meth:`RunUsage.start` and
:meth:`RunUsage.stop`; it includes reading and writing, not only the model. A worker that
restarts during the run loses what it had counted, so the figure is a lower bound then.
Energy is not measured (no portable counter on CPUs; GPU counters are not read yet): the
Item says so by leaving ``energy_kwh`` out.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunUsage", "cpu_seconds", "device_description"]


def cpu_seconds() -> float:
    """User + system CPU seconds of the calling process so far (all its threads)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return float(time.process_time())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return float(ru.ru_utime + ru.ru_stime)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> dict[str, str]:
    """``{"device_type": "cpu"|"gpu", "name": ...}`` of the calling process: the CUDA device
    torch would use when one is present and torch is already imported, else the CPU model."""
    import sys

    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return {"device_type": "gpu", "name": str(torch.cuda.get_device_name(0))}
    except Exception:  # noqa: BLE001 - a description, never fatal
        pass
    return {"device_type": "cpu", "name": f"{_cpu_model()} ({os.cpu_count()} cores)"}


def _worker_cpu(client: Any) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in client.run(cpu_seconds).items()}
    except Exception:  # noqa: BLE001 - a figure for the Item, never fatal
        return {}


@dataclass
class RunUsage:
    """CPU and wall time between :meth:`start` and :meth:`stop`."""

    wall0: float = 0.0
    cpu0: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, client: Any = None) -> RunUsage:
        """Take the starting figures (of the client's workers, or of this process)."""
        cpu = _worker_cpu(client) if client is not None else {"self": cpu_seconds()}
        return cls(wall0=time.perf_counter(), cpu0=cpu)

    def stop(self, client: Any = None, *, device: str = "auto") -> dict[str, Any]:
        """The figures of the run: ``wall_s``, ``cpu_s``, ``device_type``, ``device_name``.

        ``device`` is the setting the plan was made with: ``"cpu"`` reports the CPU even on a
        machine with a GPU.
        """
        wall = time.perf_counter() - self.wall0
        if client is not None:
            now = _worker_cpu(client)
            cpu = sum(max(0.0, v - self.cpu0.get(k, 0.0)) for k, v in now.items())
            try:
                described = list(client.run(device_description).values())
            except Exception:  # noqa: BLE001
                described = []
        else:
            cpu = max(0.0, cpu_seconds() - self.cpu0.get("self", 0.0))
            described = [device_description()]
        desc = described[0] if described else {"device_type": "cpu", "name": _cpu_model()}
        if device == "cpu" and desc["device_type"] == "gpu":
            desc = {"device_type": "cpu", "name": _cpu_model()}
        names = sorted({d["name"] for d in described}) or [desc["name"]]
        return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                "device_type": desc["device_type"], "device_name": ", ".join(names),
                "processes": max(1, len(described))}
