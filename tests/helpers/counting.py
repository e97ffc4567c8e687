"""A compute-counting dask scheduler (xarray's testing idiom): tests prove that building a
graph computes nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dask

__all__ = ["CountingScheduler", "raise_if_dask_computes"]


class CountingScheduler:
    """A synchronous dask scheduler that counts computes and raises past ``max_computes``.

    Parameters
    ----------
    max_computes : int
        Number of ``compute`` calls allowed before ``RuntimeError`` is raised.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Mapping, keys: Any, **kwargs: Any) -> Any:
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many computes. Total: {self.total_computes} > max: {self.max_computes}."
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0) -> Callable:
    """Context manager: within it, more than ``max_computes`` dask computes raise ``RuntimeError``."""
    scheduler = CountingScheduler(max_computes)
    return dask.config.set(scheduler=scheduler)
