"""Every module imports in any order and from any thread (a Dask worker's event loop unpickles
tasks while its executor threads run others), so no worker ever gets a partially initialised
module. Each dynamic check runs in a fresh interpreter, where nothing is imported yet."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.imports.import_graph import cycles, import_graph, module_files

#: Pairs of modules that two threads of a worker import at once (event loop: modules of pickled
#: task functions and reader drivers; executor threads: the model build and the read kernels),
#: and the sibling pairs that raced through eager package ``__init__`` files.
EVENT_LOOP = ["xterrafm.embedding.graph", "xterrafm.embedding.blocks", "xterrafm.io.retry",
              "xterrafm.store.write"]
EXECUTOR = ["xterrafm.embedding.runtime", "xterrafm.weights", "xterrafm.models.terrafm",
            "xterrafm.io.upsample"]
SIBLINGS = [
    ("xterrafm.io.upsample", "xterrafm.io.retry"),
    ("xterrafm.io.retry", "xterrafm.io.stac"),
    ("xterrafm.io.stac", "xterrafm.io.geotiff"),
    ("xterrafm.io.zarr_store", "xterrafm.io.grid"),
    ("xterrafm.embedding.runtime", "xterrafm.embedding.blocks"),
    ("xterrafm.models.vit", "xterrafm.models.terrafm"),
    ("xterrafm.data.cube", "xterrafm.data.stats"),
    ("xterrafm.pretrain.head", "xterrafm.pretrain.multiview"),
]
PAIRS = SIBLINGS + [p for p in itertools.product(EVENT_LOOP, EXECUTOR) if p not in SIBLINGS]
REPEATS = 2

_TWO_THREADS = textwrap.dedent("""
    import importlib, sys, threading
    start = threading.Barrier(2)
    errors = []
    def load(name):
        start.wait()
        try:
            importlib.import_module(name)
        except BaseException as err:
            errors.append(f"{name}: {type(err).__name__}: {err}")
    threads = [threading.Thread(target=load, args=(n,)) for n in sys.argv[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors or any(t.is_alive() for t in threads):
        print(errors or "an import hung"); sys.exit(1)
""")


def _fresh(args: list[str], timeout: float = 180.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd="/")


def _run_all(jobs: list[list[str]]) -> list[tuple[list[str], subprocess.CompletedProcess]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(zip(jobs, pool.map(_fresh, jobs), strict=True))


def test_the_listed_modules_exist():
    modules = module_files()
    missing = sorted({m for pair in PAIRS for m in pair} - set(modules))
    assert not missing, f"update the lists of this test: {missing}"


def test_no_import_cycle_among_the_package_modules():
    graph = {m: info.eager for m, info in import_graph().items()}
    assert cycles(graph) == []


def test_package_inits_import_only_leaf_modules():
    # a package __init__ importing a submodule that imports more of the package recreates the
    # cycle "package -> submodule -> package" that CPython resolves with a partial module
    graph = import_graph()
    files = module_files()
    leaves = {name for name, info in graph.items() if not info.eager}
    for name, info in graph.items():
        if files[name].name != "__init__.py":
            continue
        for child in info.eager - leaves:
            assert graph[child].eager <= leaves, (
                f"{name} imports {child} at import time, which imports {graph[child].eager}")


def test_third_party_imports_run_inside_the_import_gate():
    ungated = {m: info.ungated for m, info in import_graph().items() if info.ungated}
    assert ungated == {}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_threads_importing_two_modules_at_once():
    jobs = [["-c", _TWO_THREADS, a, b] for a, b in PAIRS for _ in range(REPEATS)]
    failed = [f"{job[2:]}: {res.stdout.strip()} {res.stderr.strip()[-400:]}"
              for job, res in _run_all(jobs) if res.returncode != 0]
    assert failed == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_module_imports_first_in_a_fresh_interpreter():
    jobs = [["-c", f"import {name}"] for name in module_files()]
    failed = [f"{job[1]}: {res.stderr.strip()[-400:]}"
              for job, res in _run_all(jobs) if res.returncode != 0]
    assert failed == []


def test_no_package_exports_a_name_of_one_of_its_submodules():
    # importing the submodule binds its name on the package and would hide the export
    # (xterrafm.eval.knn would become the module, not the function)
    import importlib

    files = module_files()
    clashes = []
    for name, path in files.items():
        if path.name != "__init__.py":
            continue
        package = importlib.import_module(name)
        exported = set(getattr(package, "_EXPORTS", {}))
        clashes += [f"{name}.{n}" for n in exported if f"{name}.{n}" in files]
    assert clashes == []
