"""``embed({"s1": s1_cube, "s2_l2a": s2_cube}, ...)``: fused embeddings of co-registered cubes.

The xarray layer of fused embeddings (the plan and the graph are in
:mod:`xterrafm.embedding.fused`):

1. each cube is checked like a single-modality input (:func:`~xterrafm.embedding.inputs.read_band_input`
   with the mapping's key as modality) and calibrated on its own (``calibration="auto"``:
   from its reader's provenance, dtype and attrs; ``calibration``, ``bands`` and ``items``
   settings are refused, as one value cannot fit two modalities: calibrate a cube first with
   ``xterrafm.embed``'s rules or load it with :func:`xterrafm.io.load_stac`);
2. all cubes must be on **one grid** — load the radar cube on the optical cube's grid with
   ``xterrafm.io.load_stac(..., like=s2_cube)``, or reproject it with
   ``odc.geo.xr.xr_reproject(s1, s2.odc.geobox)``;
3. the **anchor** is the first optical cube of the mapping (``s2_l2a``/``s2_l1c``; the first
   cube when there is none): its dates are the output's, and every other cube is paired with
   them, nearest in time within ``pair_tolerance`` (:mod:`xterrafm.embedding.pairing`); an
   anchor date without a partner gets NaN pixels for that modality, so its windows fall back
   to the anchor alone;
4. the plan (:class:`~xterrafm.embedding.fused.FusedPlan`) and graph are made, and the result
   wrapped like any embedding (:func:`xterrafm.embedding.api.wrap_embeddings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.bands import check_modality
from xterrafm.embedding.calibration import calibrate_input
from xterrafm.embedding.calibration_spec import parse_calibration
from xterrafm.embedding.fused import FusedPlan, fused_embed_dask, make_fused_plan
from xterrafm.embedding.inputs import BandInput, cube_geobox, read_band_input
from xterrafm.embedding.pairing import pair_dates, parse_tolerance
from xterrafm.embedding.scheduling import get_client
from xterrafm.embedding.settings import EmbedSettings
from xterrafm.errors import InputError, UsageError

with import_gate():
    import dask.array as da
    import numpy as np
    import xarray as xr

__all__ = ["align_fused_inputs", "fused_anchor", "fused_embed_and_plan", "is_fused_input"]

_OPTICAL = ("s2_l2a", "s2_l1c")


def is_fused_input(obj: Any) -> bool:
    """Whether ``obj`` is a mapping of cubes (``{"s1": cube, ...}``), not an xarray object."""
    return isinstance(obj, Mapping) and not isinstance(obj, (xr.Dataset, xr.DataArray))


def _checked(cubes: Mapping[str, Any]) -> dict[str, xr.DataArray]:
    if len(cubes) < 2:
        raise UsageError(f"fused embeddings need cubes of two or more modalities; got "
                         f"{list(cubes)}")
    inputs: dict[str, BandInput] = {}
    for key, obj in cubes.items():
        if not isinstance(obj, (xr.DataArray, xr.Dataset)):
            raise InputError(f"cube {key!r}: expected an xarray DataArray or Dataset; got "
                             f"{type(obj).__name__}")
        recorded = obj.attrs.get("modality")
        if recorded is not None and _canonical(recorded) != _canonical(key):
            raise InputError(f"the cube given as {key!r} records modality {recorded!r} in its "
                             "attrs; check the mapping's keys")
        inp = read_band_input(obj, str(key))
        if inp.modality in inputs:
            raise UsageError(f"modality {inp.modality!r} given twice")
        inputs[inp.modality] = inp
    anchor_mod = _anchor_key(list(inputs))
    grid = cube_geobox(inputs[anchor_mod].cube)
    for mod, inp in inputs.items():
        other_grid = cube_geobox(inp.cube)
        if other_grid != grid:
            raise InputError(
                f"the {mod} cube is not on the {anchor_mod} cube's grid ({other_grid.shape} px "
                f"in {other_grid.crs} vs {grid.shape} px in {grid.crs}, or another origin/"
                f"resolution): load it with xterrafm.io.load_stac(..., like={anchor_mod}_cube) "
                f"or reproject it with odc.geo.xr.xr_reproject(cube, {anchor_mod}_cube.odc."
                "geobox)")
    out: dict[str, xr.DataArray] = {}
    for mod, inp in inputs.items():
        # Each cube is calibrated on its own from its reader's provenance, dtype and attrs
        # (calibration="auto"): one explicit calibration cannot fit two modalities.
        cube, _ = calibrate_input(inp, parse_calibration("auto"))
        if not isinstance(cube.data, da.Array):
            cube = cube.copy(data=da.from_array(np.asarray(cube.data),
                                                chunks=(1, -1, 2048, 2048)))
        out[mod] = cube
    return out


def _canonical(name: Any) -> str | None:
    try:
        return check_modality(str(name))
    except ValueError:
        return None


def _anchor_key(keys: list[str]) -> str:
    return next((m for m in keys if _canonical(m) in _OPTICAL), keys[0])


def fused_anchor(cubes: Mapping[str, Any]) -> Any:
    """The cube of a mapping whose dates the fused output has: the first optical one
    (``s2_l2a``/``s2_l1c``), else the first."""
    return cubes[_anchor_key(list(cubes))]


def _anchor_first(cubes: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    anchor = _anchor_key(list(cubes))
    return {anchor: cubes[anchor], **{m: c for m, c in cubes.items() if m != anchor}}


def align_fused_inputs(cubes: Mapping[str, Any], tolerance: str
                       ) -> tuple[dict[str, xr.DataArray], list[list[str]]]:
    """Check co-registered cubes and put every other cube on the anchor's dates.

    Parameters
    ----------
    cubes : mapping of str to DataArray or Dataset
        ``{modality: cube}``, two or more, on one grid (see the module docstring).
    tolerance : str
        Pairing tolerance (``"6D"``).

    Returns
    -------
    cubes : dict of str to DataArray
        ``(time, band, y, x)`` cubes, the anchor first, all on the anchor's dates and chunks
        (lazy; NaN for a date without a partner).
    paired : list of list of str
        For each cube after the anchor, the ISO date paired with each anchor date (``""``:
        none).

    Raises
    ------
    InputError
        A cube that is no cube, a key that contradicts the cube's recorded modality, or cubes
        on different grids (the message says how to put one on the other's grid).
    """
    checked = _anchor_first(_checked(cubes))
    (anchor_mod, anchor), *others = checked.items()
    tol_s = parse_tolerance(tolerance)
    times = np.atleast_1d(anchor["time"].values)
    aligned = {anchor_mod: anchor}
    paired: list[list[str]] = []
    chunks = anchor.data.chunks
    for mod, cube in others:
        own = np.atleast_1d(cube["time"].values)
        idx = pair_dates(times, own, tol_s)
        paired.append([str(own[i]) if i >= 0 else "" for i in idx])
        taken = cube.isel(time=np.clip(idx, 0, None)) if own.size else cube
        missing = xr.DataArray(idx < 0, dims="time")
        taken = taken.where(~missing).assign_coords(time=anchor["time"].values)
        taken = taken.chunk({"time": chunks[0], "y": chunks[2], "x": chunks[3]})
        aligned[mod] = taken.transpose("time", "band", "y", "x")
    return aligned, paired


def fused_embed_and_plan(cubes: Mapping[str, Any], settings: EmbedSettings, *,
                         client: Any = None, salt: str | None = None
                         ) -> tuple[xr.DataArray, FusedPlan]:
    """The lazy ``(time, embedding, y, x)`` fused embeddings of co-registered cubes and their
    plan (what :func:`xterrafm.embed` and :func:`xterrafm.embed_to_zarr` call for a mapping).

    ``settings.modality``, when given, must name the anchor (the cube whose dates are used).
    """
    from xterrafm.embedding.api import wrap_embeddings

    given = [name for name, unset in (("calibration", settings.calibration.name == "auto"),
                                      ("bands", settings.bands is None),
                                      ("items", settings.items is None)) if not unset]
    if given:
        raise UsageError(f"{', '.join(given)}: with fused inputs each cube is calibrated on its "
                         "own from its reader and attrs; give cubes in physical units (e.g. "
                         "from xterrafm.io.load_stac) or with band names and CF scale/offset "
                         "attrs, and leave these settings unset")
    anchor_mod = _canonical(_anchor_key([str(k) for k in cubes])) if cubes else None
    if settings.modality is not None and anchor_mod is not None \
            and settings.modality != anchor_mod:
        raise UsageError(f"modality={settings.modality!r}: with fused inputs the modalities are "
                         f"the mapping's keys; the dates come from {anchor_mod!r} (leave "
                         "modality unset or name that one)")
    aligned, paired = align_fused_inputs(cubes, settings.pair_tolerance)
    mods = list(aligned)
    anchor = aligned[mods[0]]
    times = [str(t) for t in np.atleast_1d(anchor["time"].values)]
    plan = make_fused_plan(settings, modalities=mods, geobox=cube_geobox(anchor),
                           chunks=anchor.data.chunks[2:], times=times, paired=paired,
                           client=get_client(client))
    data = fused_embed_dask([aligned[m].data for m in mods], plan, salt=salt)
    return wrap_embeddings(data, plan, anchor), plan
