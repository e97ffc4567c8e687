"""``requires_*`` markers skip a test exactly when what they name is missing here."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REQUIREMENTS, _has_modules


def test_a_missing_module_is_named_and_a_present_one_passes():
    assert _has_modules("no_such_module_for_xterrafm")() == \
        "no_such_module_for_xterrafm not installed"
    assert _has_modules("numpy")() is None


@pytest.mark.parametrize(("marker", "module"), [("requires_h5py", "h5py"),
                                                ("requires_gateway", "dask_gateway_server")])
def test_each_marker_follows_its_module(marker, module):
    assert (REQUIREMENTS[marker]() is None) == (importlib.util.find_spec(module) is not None)


def test_every_registered_requires_marker_has_a_check(pytestconfig):
    registered = {line.split(":", 1)[0] for line in pytestconfig.getini("markers")}
    assert {m for m in registered if m.startswith("requires_")} == set(REQUIREMENTS)
