"""Atomic training checkpoints that load with ``torch.load(weights_only=True)``.

Only tensors and primitive containers are stored (no pickled objects), so a checkpoint from
an untrusted source cannot execute code when resumed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    import torch

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU and CUDA) as tensors and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(random.getstate()[1]), random.getstate()[0]],
        "numpy": {
            "kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    internal, version = state["python"]
    random.setstate((version, tuple(int(v) for v in internal), None))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync,
    then ``os.replace`` (a crash leaves the previous checkpoint intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises ``FileNotFoundError`` when missing and ``ValueError`` when the file is not a
    checkpoint written by :func:`save_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupted or unsafe content
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or "step" not in state or "student" not in state:
        raise ValueError(f"{path} is not an xterrafm pretraining checkpoint")
    return state
