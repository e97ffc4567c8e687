"""Fixtures of the export tests: tiny weights and hand-built cubes (from the embed tests)."""

from __future__ import annotations

from tests.embed.conftest import make_cube, tiny_weights  # noqa: F401  (fixtures)
