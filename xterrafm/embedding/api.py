"""``embed(cube, ...)``: the encoder chunk-mapped over a lazy cube, geo-referenced.

Four steps, each in its own module: check the input (:mod:`~xterrafm.embedding.inputs`), make
the plan (:mod:`~xterrafm.embedding.plan`), build the graph on plain dask arrays
(:mod:`~xterrafm.embedding.graph`), and wrap it in an ``xr.DataArray`` on the output grid
(:func:`wrap_embeddings`). Nothing is computed, and no global dask setting is changed.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.embedding.calibration import calibrate_input
from xterrafm.embedding.fused_api import fused_anchor, fused_embed_and_plan, is_fused_input
from xterrafm.embedding.graph import embed_dask
from xterrafm.embedding.inputs import cube_geobox, read_band_input
from xterrafm.embedding.plan import EmbedPlan, make_plan
from xterrafm.embedding.scheduling import get_client
from xterrafm.embedding.settings import EmbedSettings, settings_docstring, settings_parameters

with import_gate():
    import dask.array as da
    import numpy as np
    import rioxarray  # noqa: F401  (registers .rio: emb.rio.crs works on outputs)
    import xarray as xr
    from odc.geo.xr import xr_coords

__all__ = ["EMBED_DIM", "embed", "embed_and_plan", "plan_embedding", "wrap_embeddings"]

#: Name of the embedding dimension of outputs.
EMBED_DIM = "embedding"


def plan_embedding(cube: xr.DataArray | xr.Dataset, settings: EmbedSettings, *,
                   client: Any = None) -> tuple[xr.DataArray, EmbedPlan]:
    """Check an input cube, bring it to physical units and make the plan of its embedding.

    Bands are named and ordered (:mod:`~xterrafm.embedding.inputs`), the grid is checked, and
    the values are calibrated and checked (:mod:`~xterrafm.embedding.calibration`: from dtype
    and attrs, plus one bounded sample of at most 4 chunks of the first date unless the cube
    comes from ``load_stac`` or ``calibration="none"``), all before any embedding is computed.

    Returns
    -------
    cube : DataArray
        The input as ``(time, band, y, x)`` in the modality's band order, in physical units,
        dask-backed.
    plan : EmbedPlan
    """
    inp = read_band_input(cube, settings.modality, settings.bands)
    geobox = cube_geobox(inp.cube)
    cube, calibration = calibrate_input(inp, settings.calibration, settings.items)
    modality = inp.modality
    if not isinstance(cube.data, da.Array):
        cube = cube.copy(data=da.from_array(np.asarray(cube.data), chunks=(1, -1, 2048, 2048)))
    chunks = cube.data.chunks[2:]
    times = [str(t) for t in np.atleast_1d(cube["time"].values)]
    plan = make_plan(settings, modality=modality, geobox=geobox, chunks=chunks, times=times,
                     client=get_client(client), calibration=calibration)
    return cube, plan


def wrap_embeddings(data: da.Array, plan: EmbedPlan, cube: xr.DataArray) -> xr.DataArray:
    """The embeddings of :func:`~xterrafm.embedding.graph.embed_dask` as a geo-referenced
    ``(time, embedding, y, x)`` DataArray (coordinates of ``plan.out_geobox``, the input's
    times, provenance attrs from the plan)."""
    coords: dict[Hashable, Any] = dict(xr_coords(plan.out_geobox, crs_coord_name="spatial_ref"))
    coords["time"] = ("time", cube["time"].values, dict(cube["time"].attrs))
    coords[EMBED_DIM] = np.arange(plan.embed_dim)
    out = xr.DataArray(data, dims=("time", EMBED_DIM, "y", "x"), coords=coords,
                       name="embeddings", attrs=plan.attrs)
    out.encoding["grid_mapping"] = "spatial_ref"
    return out


def embed_and_plan(cube: xr.DataArray | xr.Dataset, settings: EmbedSettings | None = None, *,
                   client: Any = None, salt: str | None = None,
                   **options: Any) -> tuple[xr.DataArray, EmbedPlan]:
    """The lazy ``(time, embedding, y, x)`` embeddings of a cube and the plan they follow.

    What :func:`embed` and :func:`xterrafm.embed_to_zarr` both build on (same arguments as
    :func:`embed`, ``salt`` as for :func:`~xterrafm.embedding.graph.embed_dask`); the output
    always has a ``time`` dimension.
    """
    settings = EmbedSettings.from_options(settings, **options)
    if is_fused_input(cube):  # {"s1": cube, "s2_l2a": cube}: xterrafm.embedding.fused_api
        return fused_embed_and_plan(cube, settings, client=client, salt=salt)
    cube, plan = plan_embedding(cube, settings, client=client)
    return wrap_embeddings(embed_dask(cube.data, plan, salt=salt), plan, cube), plan


def embed(cube: xr.DataArray | xr.Dataset, settings: EmbedSettings | None = None, *,
          client: Any = None, **options: Any) -> xr.DataArray:
    """Embed a lazy cube with TerraFM, lazily.

    Parameters
    ----------
    cube : DataArray, Dataset or mapping
        ``(time, band, y, x)`` (or ``(band, y, x)``) cube in physical units (S2 reflectance, S1
        linear power) with NaN for no data and a CRS (``cube.odc.geobox``), as
        :mod:`xterrafm.io` returns; or a Dataset with one variable per band; or a mapping
        ``{{"s1": s1_cube, "s2_l2a": s2_cube}}`` of co-registered cubes on one grid, embedded
        through the model's cross-attention fusion (see :mod:`xterrafm.embedding.fused_api`;
        needs weights pretrained with fusion, which the published checkpoints are not).
    cube : DataArray or Dataset
        ``(time, band, y, x)`` (or ``(band, y, x)``) cube with a CRS (``cube.odc.geobox``): in
        physical units (S2 reflectance, S1 linear power) with NaN for no data, as
        :mod:`xterrafm.io` returns, or with what ``calibration``/``items`` need to get there
        (see docs/inputs.md); or a Dataset with one variable per band (odc-stac).
    settings : EmbedSettings, optional
        All settings at once; keyword arguments below override its fields.
    client : distributed.Client, optional
        Client whose workers decide ``resources="auto"`` (default: the current one).
{settings}

    Returns
    -------
    DataArray
        Lazy, dask-backed, float32, dims ``(time, embedding, y, x)`` (no ``time`` if the input
        had none), ``y``/``x`` at the centres of windows (tile) or patches (patch) in the input
        CRS, ``spatial_ref`` coordinate, attrs recording the provenance.

    Notes
    -----
    Model tasks carry a ``resources`` annotation when one is requested. Dask's low-level task
    fusion drops annotations; :func:`xterrafm.embed_to_zarr` and
    :func:`xterrafm.embedding.scheduling.compute` keep them, and so does computing inside
    ``with xterrafm.embedding.scheduling.keep_annotations():``.
    """
    out, _ = embed_and_plan(cube, settings, client=client, **options)
    dims = fused_anchor(cube).dims if is_fused_input(cube) else cube.dims
    return out if "time" in dims else out.isel(time=0, drop=True)


embed.__doc__ = embed.__doc__.format(settings=settings_docstring())
embed.__signature__ = inspect.signature(embed).replace(parameters=[
    *list(inspect.signature(embed).parameters.values())[:3], *settings_parameters()])
