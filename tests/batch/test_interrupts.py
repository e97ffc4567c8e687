"""A stop request survives a KeyboardInterrupt that something swallowed (gc callbacks do)."""

from __future__ import annotations

import os
import signal

import pytest

from xterrafm.batch.interrupts import StopRequests, Terminated


def _swallowing_deliver(sig: int) -> None:
    # What a gc callback or __del__ does with an exception raised inside it.
    try:
        os.kill(os.getpid(), sig)  # the handler runs before the next bytecode
    except (KeyboardInterrupt, Terminated):
        pass


def test_swallowed_sigint_is_raised_again_by_check() -> None:
    stops = StopRequests()
    with stops.installed():
        stops.check()  # nothing requested yet
        _swallowing_deliver(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            stops.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_raises_terminated_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stops = StopRequests()
    with stops.installed():
        _swallowing_deliver(signal.SIGTERM)
        with pytest.raises(Terminated):
            stops.check()
    assert signal.getsignal(signal.SIGTERM) is before
