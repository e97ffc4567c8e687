"""A stop request survives a KeyboardInterrupt that something swallowed (gc callbacks do)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from xterrafm.batch.interrupts import StopRequests, Terminated


def _swallowing_deliver(stops: StopRequests, sig: int) -> None:
    # What a gc callback or __del__ does with an exception raised inside it. The signal goes to
    # this (the main) thread: os.kill may hand it to any thread of the process (earlier tests
    # leave cluster threads behind), and Python would then run the handler only later, outside
    # this try block. The bounded wait keeps us inside it until the handler has run.
    try:
        signal.pthread_kill(threading.main_thread().ident, sig)
        for _ in range(2000):
            if stops.signum is not None:
                break
            time.sleep(0.005)
    except (KeyboardInterrupt, Terminated):
        pass
    assert stops.signum == sig, "the signal handler did not run within 10 s"


def test_swallowed_sigint_is_raised_again_by_check() -> None:
    # The handler before is restored, whatever it was: default_int_handler in a terminal,
    # SIG_IGN when the tests run in a background job of a non-interactive shell.
    before = signal.getsignal(signal.SIGINT)
    stops = StopRequests()
    with stops.installed():
        stops.check()  # nothing requested yet
        _swallowing_deliver(stops, signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            stops.check()
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_raises_terminated_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stops = StopRequests()
    with stops.installed():
        _swallowing_deliver(stops, signal.SIGTERM)
        with pytest.raises(Terminated):
            stops.check()
    assert signal.getsignal(signal.SIGTERM) is before
