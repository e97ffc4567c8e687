"""Group attributes in the conventions embedding products follow.

Every store's group attrs carry, beside xterrafm's fingerprint:

* the **geo-embeddings Zarr convention** (``geoemb:``, github.com/geo-embeddings/
  embeddings-zarr-convention, v1): ``geoemb:type``, ``geoemb:dimensions``, ``geoemb:model``,
  ``geoemb:source_data``, ``geoemb:data_type``, ``geoemb:gsd``, ``geoemb:chip_layout``,
  ``geoemb:build_version``, ``geoemb:quantization`` (int8 stores) and, on the root of a
  multi-CRS store, ``geoemb:spatial_layout``;
* ``proj:code`` (or ``proj:wkt2``) and ``spatial:*`` (``dimensions``, ``transform``,
  ``shape``, ``bbox``, ``registration``) of the output grid, the GeoZarr ``proj:`` and
  ``spatial:`` conventions the geo-embeddings convention is meant to be used with;
* ``zarr_conventions``, registering the three.

Choices where the convention leaves room (docs/products.md):

* both levels are ``"chip"`` embeddings: a tile-level vector describes one window of
  ``tile`` px every ``stride`` px, a patch-level vector one 16 px patch (seen with the context
  of its window); ``geoemb:chip_layout`` says which, in input pixels, and ``geoemb:gsd`` is
  the input pixel size in metres;
* ``geoemb:model`` is the Hugging Face URL of published weights, else ``urn:sha256:<hex>`` of
  the weights' tensors (random initialisation included), which the fingerprint also records;
* ``geoemb:source_data`` lists the source items (or files) the cube was read from
  (``cube.attrs["source_hrefs"]``, which the batch job fills), else the mission's page;
* the convention's ``utm_zones`` layout names groups ``utmNN``; a multi-CRS store names them
  ``EPSG_<code>``, so its root says ``"geoemb:spatial_layout": "crs_groups"`` (this package's
  value) and lists the groups in ``xterrafm_crs_groups``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xterrafm._version import __version__
from xterrafm.embedding.plan import EmbedPlan
from xterrafm.store.encoding import StoreEncoding

__all__ = [
    "GEOEMB_CONVENTION",
    "MULTI_CRS_LAYOUT",
    "PROJ_CONVENTION",
    "SPATIAL_CONVENTION",
    "chip_layout",
    "group_attrs",
    "input_gsd",
    "input_sources",
    "model_uri",
    "plan_modalities",
    "source_uris",
]

#: Registration of the geo-embeddings convention (its README, v1).
GEOEMB_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/geo-embeddings/embeddings-zarr-convention/"
                  "refs/tags/v1/schema.json",
    "spec_url": "https://github.com/geo-embeddings/embeddings-zarr-convention/blob/v1/README.md",
    "uuid": "61c12cc5-0e28-4056-999a-480cf3fb7e4c",
    "name": "geoemb:",
    "description": "Geoembeddings convention for geospatial embedding arrays with model "
                   "provenance",
}
#: Registration of the GeoZarr ``proj:`` convention.
PROJ_CONVENTION = {
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/"
                  "schema.json",
    "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
    "name": "proj:",
    "description": "Coordinate reference system information for geospatial data",
}
#: Registration of the ``spatial:`` convention.
SPATIAL_CONVENTION = {
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/"
                  "schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "name": "spatial:",
    "description": "Spatial coordinate information",
}
#: ``geoemb:spatial_layout`` of a multi-CRS store's root (groups named ``EPSG_<code>``).
MULTI_CRS_LAYOUT = "crs_groups"

#: Mission pages standing for the source data when the cube does not say where it came from.
_MISSIONS = {
    "s1": "https://sentinel.esa.int/web/sentinel/missions/sentinel-1",
    "s2_l1c": "https://sentinel.esa.int/web/sentinel/missions/sentinel-2",
    "s2_l2a": "https://sentinel.esa.int/web/sentinel/missions/sentinel-2",
}


def model_uri(plan: EmbedPlan) -> str:
    """``geoemb:model``: the hub URL of published weights, else ``urn:sha256:<weights hash>``."""
    source = plan.weights_source
    if source.startswith("hf://"):
        repo, _, rest = source[len("hf://"):].partition("@")
        commit, _, filename = rest.partition("/")
        return f"https://huggingface.co/{repo}/blob/{commit}/{filename}"
    return f"urn:sha256:{plan.spec.weights_sha256}"


def plan_modalities(plan: EmbedPlan) -> tuple[str, ...]:
    """The input modalities of a plan: one, or those of a fused plan (anchor first)."""
    return tuple(getattr(plan, "modalities", ()) or (plan.modality,))


def input_sources(cube: Any) -> list[str]:
    """Source items or files an input was read from (``attrs["source_hrefs"]``), those of every
    modality of a fused input ``{modality: cube}``."""
    cubes = list(cube.values()) if isinstance(cube, Mapping) else [cube]
    return [str(href) for c in cubes
            for href in (getattr(c, "attrs", {}).get("source_hrefs", []) or [])]


def source_uris(sources: Sequence[str] | None, modalities: Sequence[str]) -> list[str]:
    """Absolute URIs of the source items or files (local paths become ``file://`` URIs); the
    missions' pages of ``modalities`` when none are known."""
    out = []
    for href in sources or ():
        text = os.fspath(href)
        out.append(text if "://" in text else Path(text).absolute().as_uri())
    return sorted(set(out)) or sorted({_MISSIONS.get(m, _MISSIONS["s2_l2a"])
                                       for m in modalities})


def input_gsd(plan: EmbedPlan) -> float | None:
    """Input pixel size in metres (None for a CRS not in metres)."""
    crs = plan.geobox.crs
    units = getattr(crs, "units", ())
    if not units or not all(str(u).startswith("met") for u in units):
        return None
    return float(abs(plan.geobox.resolution.x))


def chip_layout(plan: EmbedPlan) -> dict[str, Any]:
    """``geoemb:chip_layout`` in input pixels: windows (tile level) or patches (patch level)."""
    if plan.level == "tile":
        size, step = plan.y.tile, plan.y.stride
    else:
        size = step = plan.y.patch
    return {"layout_type": "regular_grid", "chip_size": [size, size], "stride": [step, step]}


def _proj_spatial(plan: EmbedPlan) -> dict[str, Any]:
    gbox = plan.out_geobox
    crs = gbox.crs
    out: dict[str, Any] = ({"proj:code": f"EPSG:{crs.epsg}"} if crs.epsg is not None
                           else {"proj:wkt2": crs.to_wkt()})
    bbox = gbox.extent.boundingbox
    out.update({
        "spatial:dimensions": ["y", "x"],
        "spatial:transform": [float(v) for v in list(gbox.affine)[:6]],
        "spatial:shape": [int(n) for n in gbox.shape],
        "spatial:bbox": [float(bbox.left), float(bbox.bottom), float(bbox.right),
                         float(bbox.top)],
        "spatial:registration": "pixel",
    })
    return out


def group_attrs(plan: EmbedPlan, encoding: StoreEncoding,
                sources: Sequence[str] | None = None) -> dict[str, Any]:
    """The convention attributes of a store's group (JSON-ready)."""
    attrs: dict[str, Any] = {
        "zarr_conventions": [GEOEMB_CONVENTION, PROJ_CONVENTION, SPATIAL_CONVENTION],
        "geoemb:type": "chip",
        "geoemb:dimensions": int(plan.embed_dim),
        "geoemb:model": model_uri(plan),
        "geoemb:source_data": source_uris(sources, plan_modalities(plan)),
        "geoemb:data_type": encoding.dtype,
        "geoemb:chip_layout": chip_layout(plan),
        "geoemb:build_version": f"xterrafm {__version__}",
    }
    gsd = input_gsd(plan)
    if gsd is not None:
        attrs["geoemb:gsd"] = gsd
    quant = encoding.quantization()
    if quant is not None:
        attrs["geoemb:quantization"] = quant
    attrs.update(_proj_spatial(plan))
    return attrs
