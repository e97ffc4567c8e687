"""The embedding settings are declared once: the function signatures, the docstrings, the
accessor and the command line all come from EmbedSettings, and bad values are refused there."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import dask
import pytest

import xterrafm
from xterrafm.cli import build_parser
from xterrafm.embedding.settings import EmbedSettings, settings_from_namespace
from xterrafm.errors import UsageError

FIELDS = [f.name for f in dataclasses.fields(EmbedSettings)]


def _embed_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["embed"]
    raise AssertionError("no embed subcommand")


def test_signatures_and_docs_list_every_setting():
    for func in (xterrafm.embed, xterrafm.embed_to_zarr):
        params = inspect.signature(func).parameters
        assert [p for p in params if p in FIELDS] == FIELDS
        for name in FIELDS:
            assert params[name].default == EmbedSettings.__dataclass_fields__[name].default
            assert f"\n    {name} : " in func.__doc__, (func.__name__, name)


def test_accessor_methods_are_the_module_functions(make_cube):
    cube = make_cube(32, 32, n_dates=1)
    for name, func in (("embed", xterrafm.embed), ("embed_to_zarr", xterrafm.embed_to_zarr)):
        method = getattr(cube.terrafm, name)
        assert method.__wrapped__ is func and method.__doc__ == func.__doc__
        assert list(inspect.signature(method).parameters) == \
            list(inspect.signature(func).parameters)[1:]
        assert getattr(type(cube.terrafm), name) is func
        assert getattr(cube.to_dataset(name="c").terrafm, name).__wrapped__ is func


def test_the_command_line_offers_the_settings_and_keeps_their_defaults():
    parser = _embed_parser()
    dests = {a.dest for a in parser._actions}
    flagged = [f.name for f in dataclasses.fields(EmbedSettings) if f.metadata["flag"] is not None]
    assert set(flagged) <= dests
    args = parser.parse_args(["--out", "e.zarr"])
    assert settings_from_namespace(args) == EmbedSettings()
    args = parser.parse_args(["--out", "e.zarr", "--tile", "64", "--normalize", "none",
                              "--precision", "bf16", "--min-valid", "0.25"])
    s = settings_from_namespace(args)
    assert (s.tile, s.normalize, s.precision, s.min_valid) == (64, None, "bf16", 0.25)
    args = parser.parse_args(["--out", "e.zarr", "--calibration", "scale=0.0001,offset=-0.1,"
                              "nodata=0", "--bands", "VV,VH"])
    s = settings_from_namespace(args)
    assert (s.calibration.scale, s.calibration.offset, s.calibration.nodata) == \
        ((1e-4,), (-0.1,), 0.0)
    assert s.bands == ("VV", "VH")
    assert settings_from_namespace(parser.parse_args(
        ["--out", "e.zarr", "--calibration", "s2-dn-offset"])).calibration.name == "s2-dn-offset"


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"tile": (224, 112)}, "tile must be an integer"),
    ({"tile": 16.5}, "tile must be an integer"),
    ({"tile": 100}, "multiple of the 16 px"),
    ({"device": "tpu"}, "device must be"),
    ({"precision": "int4"}, "unknown precision"),
    ({"min_valid": 1.5}, "min_valid must be"),
    ({"model": "terrafm-xl"}, "unknown TerraFM variant"),
    ({"modality": "s3"}, "unknown modality"),
    ({"level": "pixel"}, "level must be"),
    ({"weights": {"a": 1}}, "not an in-memory state_dict"),
    ({"block_cells": (1, 2, 3)}, "block_cells"),
    ({"calibration": "percent"}, "calibration must be one of"),
    ({"calibration": {"scale": 0}}, "scale must not be 0"),
    ({"calibration": {"gain": 2}}, "unknown key"),
    ({"calibration": {"scale": float("nan")}}, "finite number"),
    ({"bands": ["B02", "B02"]}, "names a band twice"),
    ({"bands": {"a": "B02", "b": "B02"}}, "several inputs to one band"),
    ({"items": 3}, "items must be a list"),
    ({"items": []}, "items is empty"),
])
def test_bad_values_are_refused_naming_the_setting(kwargs, says):
    with pytest.raises(UsageError, match=says):
        EmbedSettings(**kwargs)


def test_unknown_settings_are_a_type_error(make_cube):
    with pytest.raises(TypeError, match="tyle"):
        xterrafm.embed(make_cube(32, 32), tyle=64)


def test_embed_changes_no_global_dask_setting(make_cube, tiny_weights):
    before = dict(dask.config.config)
    emb = make_cube(64, 64).terrafm.embed(model="terrafm-tiny", weights=tiny_weights, tile=64,
                                          resources={"GPU": 1})
    assert emb.data.dask.layers[emb.data.name].annotations == {"resources": {"GPU": 1}}
    assert dask.config.config == before


@pytest.mark.parametrize(("layout", "says"), [
    ({"tile": 100, "stride": 100}, "tile must be a positive multiple of the 16 px patch size"),
    ({"tile": 64, "stride": 65}, "stride must be between 1 and tile=64 px"),
    ({"tile": 64, "stride": 24, "level": "patch"},
     "at the patch level stride must be a multiple of the 16 px patch size"),
    ({"tile": 64, "stride": 64, "level": "pixel"},
     r"level must be one of \['tile', 'patch'\]; got 'pixel'"),
])
def test_settings_and_window_layout_refuse_with_one_rule(layout, says):
    """The settings (before any work, naming the model) and the array core's AxisWindows
    refuse the same layouts in the same words."""
    from xterrafm.embedding.windows import AxisWindows

    with pytest.raises(UsageError, match=says) as from_settings:
        EmbedSettings(model="terrafm-b", **layout)
    # a rule about the patch size names the model whose patch size it is
    assert ("patch size" in says) == ("patch size of terrafm-b" in str(from_settings.value))
    with pytest.raises(ValueError, match=says) as from_core:
        AxisWindows(size=256, tile=layout["tile"], stride=layout["stride"],
                    level=layout.get("level", "tile"))
    assert str(from_core.value).replace(" of terrafm-b", "") == \
        str(from_settings.value).replace(" of terrafm-b", "")
