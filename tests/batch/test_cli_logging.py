"""The command line's log handler writes to sys.stderr as it is when a record is emitted."""

from __future__ import annotations

import contextlib
import io
import logging

import pytest

from xterrafm.cli import configure_logging


@pytest.fixture
def restore_logging():
    names = ("xterrafm", "py.warnings", "distributed")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    yield
    logging.captureWarnings(False)
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_records_follow_a_swapped_and_closed_stderr(restore_logging, monkeypatch):
    errors = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda self, record: errors.append(record))
    first = io.StringIO()
    with contextlib.redirect_stderr(first):
        configure_logging(verbose=0, quiet=0)
        logging.getLogger("xterrafm.test").info("while configured")
    first.close()  # e.g. a test's capture stream, closed after the test that ran the CLI
    second = io.StringIO()
    with contextlib.redirect_stderr(second):
        logging.getLogger("xterrafm.test").info("after the swap")
    assert "after the swap" in second.getvalue()
    assert not errors  # a handler bound to the first stream fails on its closed buffer
