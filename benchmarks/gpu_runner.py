"""Sections, a time budget and an always-written JSON report for ``gpu_check.py``.

Each section of the GPU check is a function ``fn(ctx, rec)`` that fills ``rec["figures"]``.
:class:`Report` runs them one after the other, each inside its own ``try``: a failing section
records its traceback and the next one runs. The report is written to disk (atomically) after
every section and whenever a section calls :meth:`Report.write`, so that whatever stops the
script leaves the figures measured so far. A watchdog thread ends the process at the hard time
limit, after marking the report and ending the child processes the script started.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Budget", "OutOfTime", "Report", "SkipSection", "blocker_site_dir"]


class SkipSection(Exception):
    """Raised by a section that cannot run here; its message is the reason recorded."""


class OutOfTime(Exception):
    """Raised inside a section when the global budget has no room for its next step."""


class Budget:
    """Seconds left until the soft deadline, from the moment it is created.

    Parameters
    ----------
    seconds : float
        The soft budget: sections and their steps stop starting work once it is spent.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.start

    def left(self) -> float:
        """Seconds left of the budget (negative once it is spent)."""
        return self.seconds - self.elapsed()

    def need(self, seconds: float, what: str) -> None:
        """Raise :class:`OutOfTime` unless ``seconds`` are left for ``what``."""
        if self.left() < seconds:
            raise OutOfTime(f"time budget: {max(self.left(), 0):.0f} s left, {what} needs "
                            f"about {seconds:.0f} s")


class Report:
    """The JSON report of one run, written after every change that matters.

    Parameters
    ----------
    path : path-like
        Where the JSON goes (its folder is created).
    header : dict
        Top-level fields (mode, budget, command line ...).
    budget : Budget
    """

    def __init__(self, path: str | os.PathLike, header: dict, budget: Budget) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self.data: dict[str, Any] = {**header, "complete": False, "stopped_by": None,
                                     "sections": {}}
        self._lock = threading.RLock()
        self.write()

    # -- writing ---------------------------------------------------------------------------
    def write(self) -> None:
        """Write the report now (atomic replace), with the elapsed time."""
        with self._lock:
            self.data["elapsed_s"] = round(self.budget.elapsed(), 2)
            text = json.dumps(self.data, indent=1, default=_jsonable)
            fd, tmp = tempfile.mkstemp(prefix=".gpu_check-", dir=self.path.parent)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.path)

    # -- sections --------------------------------------------------------------------------
    def run_section(self, name: str, fn: Callable[[Any, dict], None], ctx: Any,
                    need_s: float) -> dict:
        """Run one section and record its outcome.

        Parameters
        ----------
        name : str
            Key under ``sections``.
        fn : callable
            ``fn(ctx, rec)``; fills ``rec["figures"]`` (and may set ``rec["status"]`` to
            ``"failed"``/``"skipped"``/``"partial"`` with ``rec["reason"]``).
        ctx : object
            Passed to ``fn``.
        need_s : float
            Seconds the section needs at least; with less left it is skipped.

        Returns
        -------
        dict
            The section's record: ``status`` (``ok``, ``failed``, ``partial``, ``skipped``,
            ``error``), ``seconds``, ``figures``, and ``reason`` or ``traceback``.
        """
        rec: dict[str, Any] = {"status": "running", "started_at_s": round(self.budget.elapsed(), 1),
                               "figures": {}}
        with self._lock:
            self.data["sections"][name] = rec
        if self.budget.left() < need_s:
            rec.update(status="skipped", reason=f"time budget: {max(self.budget.left(), 0):.0f} s "
                       f"left, the section needs about {need_s:.0f} s")
            self.write()
            _say(self.budget, f"{name}: skipped ({rec['reason']})")
            return rec
        self.write()
        _say(self.budget, f"{name}: started")
        t0 = time.monotonic()
        try:
            fn(ctx, rec)
            if rec["status"] == "running":
                rec["status"] = "ok"
        except SkipSection as err:
            rec.update(status="skipped", reason=str(err))
        except OutOfTime as err:
            rec.update(status="partial" if _has_figures(rec) else "skipped", reason=str(err))
        except Exception as err:  # noqa: BLE001 - every failure is recorded, the run goes on
            rec.update(status="error", reason=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc(limit=30))
        rec["seconds"] = round(time.monotonic() - t0, 2)
        self.write()
        extra = f" ({rec['reason']})" if rec.get("reason") else ""
        _say(self.budget, f"{name}: {rec['status']} in {rec['seconds']:.1f} s{extra}")
        return rec

    def finish(self) -> None:
        """Mark the report complete and write it."""
        with self._lock:
            self.data["complete"] = True
        self.write()

    # -- the hard limit --------------------------------------------------------------------
    def start_watchdog(self, hard_limit_s: float) -> threading.Timer:
        """End the process ``hard_limit_s`` after the start, whatever runs then.

        The report is marked (``stopped_by: "hard time limit"``, the running section as
        ``killed``) and written, the child processes of this process are ended, and the
        process exits with status 3.
        """
        def stop() -> None:
            with self._lock:
                self.data["stopped_by"] = "hard time limit"
                for rec in self.data["sections"].values():
                    if rec.get("status") == "running":
                        rec.update(status="killed", reason=f"hard time limit of {hard_limit_s:.0f} s "
                                   "reached while it ran")
                self.write()
            _say(self.budget, f"hard time limit of {hard_limit_s:.0f} s: stopping; report at "
                 f"{self.path}")
            end_children()
            sys.stdout.flush()
            os._exit(3)

        timer = threading.Timer(max(0.0, hard_limit_s - self.budget.elapsed()), stop)
        timer.daemon = True
        timer.start()
        return timer


def end_children(timeout: float = 3.0) -> None:
    """Terminate, then kill, the child processes of this process (those it started)."""
    try:
        import psutil
    except ImportError:
        return
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def _has_figures(rec: dict) -> bool:
    return any(v not in (None, [], {}) for v in rec.get("figures", {}).values())


def _jsonable(obj: Any) -> Any:
    """Fallback of the JSON encoder: numpy scalars and arrays, paths, anything else as text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _say(budget: Budget, text: str) -> None:
    print(f"[{budget.elapsed():6.1f} s] {text}", flush=True)


# -- import blocking (rehearsing the GPU machine's environment) ---------------------------------
_SITECUSTOMIZE = '''\
"""Hides the packages named in XTERRAFM_BLOCK_IMPORTS (written by benchmarks/gpu_runner.py):
sys.path's finder reports them absent, so that ``import`` fails and ``find_spec`` returns None,
as on a machine without them."""
import importlib.machinery
import os
import sys

_BLOCKED = tuple(n for n in os.environ.get("XTERRAFM_BLOCK_IMPORTS", "").split(",") if n)


class _HidingPathFinder(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if any(fullname == b or fullname.startswith(b + ".") for b in _BLOCKED):
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, path, target)


if _BLOCKED:
    sys.meta_path[:] = [_HidingPathFinder if f is importlib.machinery.PathFinder else f
                        for f in sys.meta_path]
'''


def blocker_site_dir(names: list[str], root: str | os.PathLike) -> Path:
    """Make imports of ``names`` fail here and in every child process, as on a machine
    without those packages.

    Writes a ``sitecustomize.py`` into ``root/blocker``, puts that folder first on
    ``PYTHONPATH`` and the names into ``XTERRAFM_BLOCK_IMPORTS`` (inherited by subprocesses and
    by spawned Dask workers), and installs the same import hook in this process.

    Returns
    -------
    Path
        The folder holding the ``sitecustomize.py``.
    """
    folder = Path(root) / "blocker"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    os.environ["XTERRAFM_BLOCK_IMPORTS"] = ",".join(names)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(folder)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    namespace: dict[str, Any] = {}
    exec(compile(_SITECUSTOMIZE, str(folder / "sitecustomize.py"), "exec"), namespace)  # noqa: S102
    for name in names:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
    return folder
