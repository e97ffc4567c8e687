"""Static view of the package's imports: which xterrafm modules each module imports while it
is being imported (module and class bodies, not function bodies), and which third-party
imports run outside :func:`xterrafm._imports.import_gate`."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import xterrafm

PACKAGE_DIR = Path(xterrafm.__file__).parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def module_files() -> dict[str, Path]:
    """``{"xterrafm.io.stac": path, ...}`` for every module of the package."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_gate(node: ast.With) -> bool:
    return any(isinstance(i.context_expr, ast.Call) and getattr(i.context_expr.func, "id", "")
               == "import_gate" for i in node.items)


@dataclass
class ModuleImports:
    """What importing one module imports."""

    eager: set[str] = field(default_factory=set)  # xterrafm modules imported at import time
    ungated: list[str] = field(default_factory=list)  # third-party imports outside the gate


def scan(module: str, path: Path, modules: set[str]) -> ModuleImports:
    """Imports of ``module`` (see :class:`ModuleImports`)."""
    tree = ast.parse(path.read_text())
    result = ModuleImports()
    is_package = path.name == "__init__.py"

    def visit(nodes: list[ast.stmt], *, in_function: bool, gated: bool) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    base = _absolute(node, module, is_package)
                    names = [base] + [f"{base}.{a.name}" for a in node.names]
                top = names[0].split(".")[0]
                if top == "xterrafm":
                    if not in_function:
                        result.eager.update(n for n in names if n in modules and n != module)
                elif top not in STDLIB and not gated:
                    result.ungated.append(f"{path.name}:{node.lineno} {names[0]}")
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # never runs
            inner_function = in_function or isinstance(node, (ast.FunctionDef,
                                                              ast.AsyncFunctionDef, ast.Lambda))
            inner_gated = gated or (isinstance(node, ast.With) and _is_gate(node))
            for name in ("body", "orelse", "finalbody"):
                block = getattr(node, name, None)
                if isinstance(block, list):
                    visit(block, in_function=inner_function, gated=inner_gated)
            for handler in getattr(node, "handlers", []) or []:
                visit(handler.body, in_function=inner_function, gated=inner_gated)

    visit(tree.body, in_function=False, gated=False)
    return result


def import_graph() -> dict[str, ModuleImports]:
    """:func:`scan` of every module of the package."""
    files = module_files()
    return {m: scan(m, p, set(files)) for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found
