"""docs/api.md is what docs/gen_api.py generates from the code's ``__all__`` lists, and every
name in an ``__all__`` exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_api", DOCS / "gen_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_page_is_up_to_date():
    gen = _generator()
    assert (DOCS / "api.md").read_text() == gen.render(), "run: python docs/gen_api.py"
