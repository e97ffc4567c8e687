"""The exceptions xterrafm raises, under one root, and the exit code of each on the command line.

Every error the package raises on purpose derives from :class:`XterrafmError`, so
``except xterrafm.errors.XterrafmError`` catches all of them. Each also keeps the builtin base
that users already catch for that kind of problem (``ValueError`` for bad arguments and
inputs, ``LookupError`` for a missing band, ``OSError`` for unreadable files, ``RuntimeError``
for a failed job), so existing ``except ValueError`` code keeps working.

This module imports nothing but the standard library: workers and the command line import it
from any thread, in any order.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CLUSTER",
    "EXIT_CODES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STORE_MISMATCH",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "AssetReadError",
    "BandNotFoundError",
    "ClusterError",
    "EmbedJobError",
    "InputError",
    "ModelOutputError",
    "RandomWeightsWarning",
    "NoFusionWeightsError",
    "NotAStoreError",
    "SourceError",
    "StoreError",
    "StoreMismatchError",
    "UnsafeWeightsError",
    "UsageError",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "WorkersLostError",
    "XterrafmError",
    "XterrafmWarning",
    "exit_code",
]


class XterrafmError(Exception):
    """Root of every exception xterrafm raises on purpose."""


# -- arguments and inputs (exit code 2) ------------------------------------------------------
class UsageError(XterrafmError, ValueError):
    """An argument has a value that cannot work (the message names the argument and value)."""


class InputError(UsageError):
    """An input cube, file or catalog cannot be used as given (wrong bands, units, CRS...)."""


class SourceError(InputError):
    """A batch job's SOURCE cannot be used as given (unknown form, missing file, no items)."""


class BandNotFoundError(InputError, LookupError):
    """A band of the modality is missing from an input; the message names band and input."""


# -- weights ---------------------------------------------------------------------------------
class WeightsError(XterrafmError, ValueError):
    """A weights file cannot be used (unreadable, wrong layout, wrong hash)."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights file at the given path."""


class UnsafeWeightsError(WeightsError):
    """A checkpoint would need unpickling arbitrary objects to load; it is refused."""


class WeightsMismatchError(WeightsError):
    """Loaded weights are not the ones expected (names, shapes or SHA-256 differ)."""


class NoFusionWeightsError(WeightsError):
    """Fused embeddings were asked of weights without fusion parameters (the published ones)."""


class WeightsDownloadError(WeightsError, RuntimeError):
    """Published weights could not be fetched (offline and not cached, unreachable, truncated)."""


# -- reading ---------------------------------------------------------------------------------
class AssetReadError(XterrafmError, OSError):
    """A raster asset could not be read after all retries; the message names its href."""


# -- stores ----------------------------------------------------------------------------------
class StoreError(XterrafmError):
    """An embedding store cannot be written or read as asked."""


class StoreMismatchError(StoreError, ValueError):
    """The store was written with other settings or another layout; it is not resumed."""


class NotAStoreError(StoreMismatchError, FileExistsError):
    """The path holds something that is not an xterrafm embedding store (or half of one)."""


# -- jobs and clusters -----------------------------------------------------------------------
class ClusterError(XterrafmError, RuntimeError):
    """The requested Dask cluster could not be created or reached (the message says why)."""


class WorkersLostError(XterrafmError, RuntimeError):
    """The cluster lost all its workers during a job and none came back in time."""


class ModelOutputError(XterrafmError, RuntimeError):
    """The model returned NaN or infinite values for windows whose inputs were valid (corrupted
    weights, an overflow in reduced precision); the message names the windows."""


class EmbedJobError(XterrafmError, RuntimeError):
    """A batch job failed; ``summary`` holds what was done before the failure (may be None)."""

    def __init__(self, message: str, summary: object | None = None) -> None:
        super().__init__(message)
        self.summary = summary


# -- warnings --------------------------------------------------------------------------------
class XterrafmWarning(UserWarning):
    """Root of the warnings xterrafm gives."""


class RandomWeightsWarning(XterrafmWarning):
    """Embeddings are made with randomly initialised weights (meaningless but for tests)."""


# -- exit codes of the command line ----------------------------------------------------------
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STORE_MISMATCH = 3
EXIT_CLUSTER = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: Error type -> exit code, most specific first; anything else is :data:`EXIT_FAILURE`.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (StoreMismatchError, EXIT_STORE_MISMATCH),
    (ClusterError, EXIT_CLUSTER),
    (UsageError, EXIT_USAGE),
    (WeightsDownloadError, EXIT_FAILURE),
    (WeightsError, EXIT_USAGE),
)


def exit_code(err: BaseException) -> int:
    """The command line's exit code for ``err`` (see :data:`EXIT_CODES`)."""
    for kind, code in EXIT_CODES:
        if isinstance(err, kind):
            return code
    return EXIT_FAILURE
