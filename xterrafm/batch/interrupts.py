"""Ctrl-C and SIGTERM for long batch jobs.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives;
inside a garbage-collector callback or a ``__del__`` (distributed installs gc callbacks) the
exception is printed and *swallowed*, and the job would carry on. :class:`StopRequests` keeps
the request: its handlers record the signal before raising, and :meth:`StopRequests.check`,
called by the job while it waits for blocks (and after every wave), raises again if an earlier
raise was lost: also when the workers died of the same Ctrl-C and no block will finish.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["StopRequests", "Terminated"]


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


class StopRequests:
    """Signal handlers that remember a stop request (SIGINT -> ``KeyboardInterrupt``,
    SIGTERM -> :class:`Terminated`)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.check()

    def check(self) -> None:
        """Raise the exception of a stop request received so far; do nothing otherwise."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is not None:
            raise Terminated(f"received signal {self.signum}")

    @contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Install the handlers for the duration of the block (main thread only; elsewhere
        nothing is installed and :meth:`check` never raises)."""
        previous: dict[int, object] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
