"""Fixtures of the IO tests: loopback HTTP servers over the shared synthetic scene."""

from __future__ import annotations

import os

import pytest

from tests.helpers.http_server import serve_http


def relurl(server, scene, path) -> str:
    """URL under which ``server`` (serving ``scene.root``) serves the file ``path``."""
    return server.url + "/" + os.path.relpath(path, scene.root).replace(os.sep, "/")


@pytest.fixture(scope="module")
def http_scene(synthetic_scene):
    """A well-behaved HTTP server (Range requests, HEAD) serving the synthetic scene."""
    with serve_http(synthetic_scene.root) as srv:
        yield srv


@pytest.fixture
def flaky_http_scene(synthetic_scene):
    """A server on which every request (HEAD, or GET of a range) answers 503 the first time it
    is made: transient failures that a retry of the same request overcomes."""
    with serve_http(synthetic_scene.root, fail_first=1) as srv:
        yield srv


@pytest.fixture
def url_of(synthetic_scene):
    """``url_of(server, path)``: the URL of a scene file on a server."""
    return lambda server, path: relurl(server, synthetic_scene, path)
