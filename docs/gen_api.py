"""Write docs/api.md: the public API, generated from each public module's ``__all__``.

Run ``python docs/gen_api.py`` after changing a public name; ``tests/test_api_page.py`` fails
while the page and the code disagree.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

#: Public modules, in the order the page lists them.
MODULES = (
    "xterrafm", "xterrafm.embedding", "xterrafm.store", "xterrafm.export", "xterrafm.io", "xterrafm.errors",
    "xterrafm.weights", "xterrafm.hub", "xterrafm.normalization", "xterrafm.bands",
    "xterrafm.models", "xterrafm.datasets", "xterrafm.data", "xterrafm.pretrain",
    "xterrafm.eval", "xterrafm.tilestats", "xterrafm.worldcover", "xterrafm.pca", "xterrafm.analysis",
)
PAGE = Path(__file__).with_name("api.md")


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ")


def _entry(module: str, name: str, obj: object) -> str:
    if inspect.ismodule(obj):
        return f"- `{name}` (module `{obj.__name__}`): {_summary(obj)}"
    home = getattr(obj, "__module__", None) or module
    kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
    line = f"- `{name}` ({kind}, from `{home}`)"
    summary = _summary(obj) if kind != "value" else ""
    return f"{line}: {summary}" if summary else line


def render() -> str:
    """The page's Markdown text."""
    out = ["# API", "",
           "Generated from each module's `__all__` by `docs/gen_api.py`; every name links to its",
           "docstring (`help(name)`), which says what it is for, its units and shapes.", ""]
    for module in MODULES:
        mod = importlib.import_module(module)
        out += [f"## `{module}`", "", _summary(mod), ""]
        for name in sorted(getattr(mod, "__all__", [])):
            out.append(_entry(module, name, getattr(mod, name)))
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[1]))
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
