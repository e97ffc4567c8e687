"""The private dependency APIs xterrafm uses are all there (xterrafm._compat is the only place
that imports them), and nothing else in the package reaches into a dependency's privates."""

from __future__ import annotations

import ast
import importlib.metadata

from tests.imports.import_graph import module_files
from xterrafm import _compat


def test_every_private_name_is_there():
    problems = _compat.check()
    assert problems == [], "\n".join(problems)


def test_the_versions_checked_against_are_the_pinned_ones():
    for dist, version in _compat.CHECKED_AGAINST.items():
        assert importlib.metadata.version(dist) == version, (
            f"{dist} {importlib.metadata.version(dist)} is installed; xterrafm._compat was "
            f"checked against {version} (constraints.txt pins it): check PRIVATE_NAMES again")


def test_only_compat_imports_private_modules_of_dependencies():
    offenders = []
    for name, path in module_files().items():
        if name == "xterrafm._compat":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                parts = node.module.split(".")
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                parts, names = node.names[0].name.split("."), []
            else:
                continue
            if parts[0] == "xterrafm":
                continue
            if any(p.startswith("_") and p != "__future__" for p in parts) or \
                    any(n.startswith("_") for n in names):
                offenders.append(f"{name}: {ast.unparse(node)}")
    assert offenders == []
