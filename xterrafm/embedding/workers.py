"""Workers of a distributed job: set up once, their errors reported, never waited for forever.

:class:`WorkerSetup` is a worker plugin that an embedding job registers on its client. On
every worker (and on every worker that joins later) it

* imports the modules that the job's tasks need, in the worker's event loop, before the worker
  receives a task: no thread of the worker then imports them for the first time while another
  one does (see :mod:`xterrafm._imports`);
* forwards the worker's own error log records (distributed's, and tornado's report of an
  exception that ended the worker's connection to the scheduler) to the scheduler's event log
  under :data:`ERROR_TOPIC`, through a separate connection, so that they are known even when
  the worker then closes itself.

:func:`gather_with_watch` collects the results of futures and fails with
:class:`WorkersLostError`, naming the workers' last errors, when the cluster has had no worker
for ``no_worker_timeout`` seconds, instead of waiting forever.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import WorkersLostError

with import_gate():
    from distributed.diagnostics.plugin import WorkerPlugin

__all__ = [
    "DEFAULT_NO_WORKER_TIMEOUT_S",
    "ERROR_TOPIC",
    "WORKER_MODULES",
    "WorkerSetup",
    "gather_with_watch",
    "install_worker_setup",
]

#: Scheduler event topic of the forwarded worker errors.
ERROR_TOPIC = "xterrafm-worker-errors"

#: Seconds a job waits with no worker at all before it fails (a nanny restarts a killed worker
#: within seconds; a worker that closed itself is not restarted).
DEFAULT_NO_WORKER_TIMEOUT_S = 60.0

#: Modules the tasks of an embedding job use (their functions and the objects they carry).
WORKER_MODULES = ("xterrafm.embedding.graph", "xterrafm.embedding.runtime",
                  "xterrafm.store.write", "xterrafm.io.retry")

_LOGGERS = ("distributed", "tornado.application")


class _ForwardErrors(logging.Handler):
    """Sends error records of a worker to the scheduler's event log, from the worker's loop."""

    def __init__(self, worker: Any) -> None:
        super().__init__(level=logging.ERROR)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                err = record.exc_info[1]
                text += "\n" + "".join(traceback.format_exception_only(type(err), err)).strip()
            msg = {"worker": str(getattr(self.worker, "address", "?")), "logger": record.name,
                   "message": text[-4000:]}
            self.worker.loop.add_callback(self._send, msg)
        except Exception:  # noqa: BLE001 - reporting must never break the worker
            pass

    async def _send(self, msg: dict) -> None:
        try:  # its own connection: the worker's stream to the scheduler may be the broken thing
            await self.worker.scheduler.log_event(topic=ERROR_TOPIC, msg=msg)
        except Exception:  # noqa: BLE001 - the scheduler may be gone too
            pass


class WorkerSetup(WorkerPlugin):
    """Worker plugin of embedding jobs (see the module docstring).

    Parameters
    ----------
    modules : sequence of str
        Modules to import when a worker starts (default :data:`WORKER_MODULES`).
    """

    name = "xterrafm-worker-setup"

    def __init__(self, modules: Sequence[str] = WORKER_MODULES) -> None:
        self.modules = tuple(modules)
        self._handler: _ForwardErrors | None = None

    def setup(self, worker: Any) -> None:
        self._handler = _ForwardErrors(worker)
        for name in _LOGGERS:
            logging.getLogger(name).addHandler(self._handler)
        for module in self.modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the task that needs it reports the error
                logging.getLogger("distributed.worker").exception(
                    "xterrafm could not import %s on this worker", module)

    def teardown(self, worker: Any) -> None:
        if self._handler is not None:
            for name in _LOGGERS:
                logging.getLogger(name).removeHandler(self._handler)


def install_worker_setup(client: Any) -> None:
    """Register :class:`WorkerSetup` on ``client``'s cluster (once; later calls replace it)."""
    client.register_plugin(WorkerSetup(), name=WorkerSetup.name)


def worker_errors(client: Any) -> list[str]:
    """The errors workers forwarded so far (oldest first), one ``"worker: message"`` each."""
    try:
        events = client.get_events(ERROR_TOPIC)
    except Exception:  # noqa: BLE001 - the scheduler may be gone
        return []
    return [f"{msg.get('worker', '?')}: {msg.get('message', '')}" for _, msg in events]


def gather_with_watch(client: Any, futures: Sequence[Any], on_result: Callable[[Any], None], *,
                      more: Iterator[Any] | None = None,
                      check: Callable[[], None] | None = None,
                      no_worker_timeout: float = DEFAULT_NO_WORKER_TIMEOUT_S,
                      poll_s: float = 1.0) -> None:
    """Call ``on_result`` with each future's result as it finishes, waiting a bounded time.

    Parameters
    ----------
    client : distributed.Client
    futures : sequence of Future
    on_result : callable
        Called with each result, in completion order.
    more : iterator of Future, optional
        Further futures, taken one at a time: one each time a future has finished and its
        ``on_result`` returned, so that as many are in flight as ``futures`` started with
        (a rolling window; the iterator submits them as it is advanced).
    check : callable, optional
        Called on every turn of the wait (about every 20 ms) so that it can raise, e.g. a stop
        request whose own raise was lost (:meth:`xterrafm.batch.interrupts.StopRequests.check`).
    no_worker_timeout : float
        Seconds without any worker after which the wait fails.
    poll_s : float
        How often the cluster is looked at while nothing finishes.

    Raises
    ------
    WorkersLostError
        No worker for ``no_worker_timeout`` seconds; the message lists what the workers
        reported before they went (e.g. the exception that ended one).
    Exception
        The error of a failed future, as distributed raises it.
    """
    with import_gate():
        from distributed import as_completed

    # the loop of *this* client: as_completed otherwise looks for a default client, and a
    # client made with set_as_default=False is not one
    ready = as_completed(futures, loop=client.loop)
    alone_since: float | None = None
    last_look = time.monotonic()
    while not ready.is_empty():
        if check is not None:
            check()
        if ready.has_ready():
            for fut in ready.next_batch(block=False):
                on_result(fut.result())
                nxt = next(more, None) if more is not None else None
                if nxt is not None:
                    ready.add(nxt)
            continue
        time.sleep(0.02)
        now = time.monotonic()
        if now - last_look < poll_s:
            continue
        last_look = now
        if client.scheduler_info(n_workers=-1).get("workers"):
            alone_since = None
            continue
        alone_since = now if alone_since is None else alone_since
        if now - alone_since >= no_worker_timeout:
            errors = worker_errors(client)
            said = ("; the workers reported:\n" + "\n".join(errors[-5:])) if errors else \
                "; they reported no error (killed from outside, or out of memory?)"
            raise WorkersLostError(
                f"the cluster has had no worker for {no_worker_timeout:.0f} s with "
                f"{ready.count()} block(s) in flight{said}")
