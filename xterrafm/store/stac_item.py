"""The STAC Item written with every store, next to it (``emb.zarr`` -> ``emb.stac-item.json``;
see :func:`xterrafm.store.layout.item_location`).

It follows the STAC Embeddings extension (github.com/geo-embeddings/
embeddings-stac-specification, v0.0.1): an ``embeddings`` asset (the store, by an href
relative to the Item: ``./emb.zarr``), ``emb:runtime_parameters`` (every setting the embeddings depend
on and how they were computed), ``emb:energy`` (device, wall time of the run; ``energy_kwh``
is left out because it is not measured), ``emb:quantization`` for int8 stores, and one
``emb:source-data`` link per source item or file. Also: the projection extension
(``proj:code``, ``proj:shape``, ``proj:transform`` of the output grid), the processing
extension (``processing:datetime``, ``processing:software``) and xterrafm's own
``xterrafm:*`` properties: CPU time of this run and of all runs (:mod:`xterrafm.store.usage`),
the counts (blocks done, cells embedded and empty) and whether the store is complete.

The Item is rewritten after every run of the writer, so it always describes the store as it
is; totals accumulate over runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from xterrafm._imports import import_gate
from xterrafm._version import __version__
from xterrafm.embedding.plan import EmbedPlan
from xterrafm.store.conventions import (
    chip_layout,
    input_gsd,
    model_uri,
    plan_modalities,
    source_uris,
)
from xterrafm.store.counts import EmbedSummary
from xterrafm.store.encoding import StoreEncoding
from xterrafm.store.layout import item_location, store_fs

__all__ = ["EMBEDDINGS_EXTENSION", "PROCESSING_EXTENSION", "ZARR_MEDIA_TYPE", "build_store_item",
           "runtime_parameters", "write_store_item"]

#: Schema URI of the STAC Embeddings extension.
EMBEDDINGS_EXTENSION = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
#: Schema URI of the STAC Processing extension.
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: Media type of a Zarr store asset.
ZARR_MEDIA_TYPE = "application/vnd+zarr"


def _times(plan: EmbedPlan) -> list[datetime]:
    """The plan's dates that are dates (inputs without dates have NaT)."""
    with import_gate():
        import numpy as np

    out = []
    for t in plan.times:
        try:
            value = np.datetime64(t, "s")
        except ValueError:
            continue
        if not np.isnat(value):
            out.append(datetime.fromtimestamp(int(value.astype("int64")), tz=timezone.utc))
    return out


def runtime_parameters(plan: EmbedPlan, encoding: StoreEncoding,
                       zarr_format: int | None = None) -> dict[str, Any]:
    """``emb:runtime_parameters``: what the embeddings depend on and how they were computed."""
    s = plan.settings
    attrs = plan.attrs
    out = {"model": plan.spec.model, "weights": plan.weights_source,
           "weights_sha256": plan.spec.weights_sha256, "modality": "+".join(plan_modalities(plan)),
           "bands": attrs["bands"], "normalization": attrs["normalization"],
           "level": plan.level, "tile": s.tile, "stride": s.step, "patch_size": plan.y.patch,
           "min_valid": s.min_valid, "seed": s.seed, "device": s.device,
           "precision": s.precision, "batch_size": s.batch_size,
           "block_cells": list(plan.cells), "dtype": encoding.dtype, "fill": attrs["fill"]}
    if zarr_format is not None:
        out["zarr_format"] = int(zarr_format)
    return out


def build_store_item(store: str, plan: EmbedPlan, encoding: StoreEncoding,
                     summary: EmbedSummary, usage: dict[str, Any],
                     sources: Sequence[str] | None = None,
                     previous: dict | None = None, zarr_format: int | None = None) -> Any:
    """The :class:`pystac.Item` of a store after a run.

    Parameters
    ----------
    store : str
        The store (path or URL); the Item's id and the asset's relative href follow from
        :func:`~xterrafm.store.layout.item_location`.
    plan : EmbedPlan
    encoding : StoreEncoding
    summary : EmbedSummary
        The run's counts.
    usage : dict
        :meth:`~xterrafm.store.usage.RunUsage.stop` of the run.
    sources : sequence of str, optional
        Source items or files (one ``emb:source-data`` link each).
    previous : dict, optional
        The Item the store held before this run (its totals are carried on).
    zarr_format : int, optional
        The store's Zarr format.
    """
    with import_gate():
        import pystac
        from pystac.extensions.projection import ProjectionExtension

    gbox = plan.out_geobox
    footprint = gbox.footprint("epsg:4326", npoints=4)
    times = _times(plan)
    now = datetime.now(timezone.utc)
    props: dict[str, Any] = {}
    if not times:  # STAC needs a date: the processing time stands in, and says so
        times = [now]
        props["xterrafm:acquisition_dates_unknown"] = True
    single = times[0] if len(times) == 1 else None
    if single is None and times:
        props["start_datetime"] = pystac.utils.datetime_to_str(min(times))
        props["end_datetime"] = pystac.utils.datetime_to_str(max(times))
    counts = summary.counts
    before = (previous or {}).get("properties", {})
    runs = int(before.get("xterrafm:runs", 0)) + 1
    props.update({
        "description": f"TerraFM {plan.level}-level embeddings ({plan.embed_dim} dimensions) "
                       f"of {' + '.join(plan_modalities(plan))} imagery, {len(plan.times)} date(s)",
        "data_type": encoding.dtype,
        "emb:runtime_parameters": runtime_parameters(plan, encoding, zarr_format),
        "emb:energy": {"device_type": usage["device_type"], "name": usage["device_name"],
                       "inference_duration_s": float(usage["wall_s"]), "platform": "local"},
        "processing:datetime": pystac.utils.datetime_to_str(now),
        "processing:software": {"xterrafm": str(__version__)},
        "xterrafm:cpu_time_s": float(usage["cpu_s"]),
        "xterrafm:cpu_time_s_total": round(float(before.get("xterrafm:cpu_time_s_total", 0.0))
                                           + float(usage["cpu_s"]), 3),
        "xterrafm:wall_time_s_total": round(float(before.get("xterrafm:wall_time_s_total", 0.0))
                                            + float(usage["wall_s"]), 3),
        "xterrafm:runs": runs,
        "xterrafm:processes": int(usage.get("processes", 1)),
        "xterrafm:chip_layout": chip_layout(plan),
        "xterrafm:blocks_total": counts.blocks_total,
        "xterrafm:blocks_done": counts.done.blocks,
        "xterrafm:cells_embedded": counts.done.embedded,
        "xterrafm:cells_empty": counts.done.empty,
        "xterrafm:complete": counts.complete,
    })
    gsd = input_gsd(plan)
    if gsd is not None:
        props["gsd"] = gsd
    quant = encoding.quantization()
    if quant is not None:
        props["emb:quantization"] = {k: quant[k] for k in
                                     ("method", "original_dtype", "quantized_dtype")}
        props["xterrafm:quantization"] = quant
    _, href, ident = item_location(store)
    item = pystac.Item(id=ident, geometry=footprint.json,
                       bbox=list(footprint.boundingbox), datetime=single, properties=props,
                       stac_extensions=[EMBEDDINGS_EXTENSION, PROCESSING_EXTENSION])
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    crs = gbox.crs
    if crs.epsg is not None:
        proj.code = f"EPSG:{crs.epsg}"
    else:
        proj.wkt2 = crs.to_wkt()
    proj.shape = [int(n) for n in gbox.shape]
    proj.transform = [float(v) for v in list(gbox.affine)[:6]]
    item.add_asset("embeddings", pystac.Asset(
        href=href, media_type=ZARR_MEDIA_TYPE, roles=["data"],
        title=f"embeddings ({encoding.dtype}, Zarr v{zarr_format or '?'})",
        extra_fields={"xarray:open_kwargs": {"engine": "zarr", "consolidated": True,
                                             "decode_coords": "all"}}))
    for href in source_uris(sources, plan_modalities(plan)) if sources else []:
        item.add_link(pystac.Link(rel="emb:source-data", target=href,
                                  media_type="application/geo+json"
                                  if href.endswith(".json") else None,
                                  title="source imagery"))
    model = model_uri(plan)
    if model.startswith("http"):
        item.add_link(pystac.Link(rel="emb:model", target=model, title=plan.spec.model))
    return item


def write_store_item(store: str, plan: EmbedPlan, encoding: StoreEncoding,
                     summary: EmbedSummary, usage: dict[str, Any],
                     sources: Sequence[str] | None = None) -> str:
    """Build the Item of a store after a run and write it next to the store.

    Totals are carried on from the Item already there when the run resumed the store
    (``summary.state == "resume"``).

    Returns
    -------
    str
        Path of the Item in the store's file system.
    """
    with import_gate():
        import zarr

    fs, _ = store_fs(store)
    path, _, _ = item_location(store)
    previous = None
    if summary.state == "resume":
        try:
            with fs.open(path, "rb") as fh:
                previous = json.loads(fh.read().decode())
        except (FileNotFoundError, ValueError):
            previous = None
    try:
        zarr_format = int(zarr.open_group(str(store), mode="r").metadata.zarr_format)
    except Exception:  # noqa: BLE001 - the format is a detail of the Item
        zarr_format = None
    item = build_store_item(store, plan, encoding, summary, usage, sources, previous,
                            zarr_format)
    fs.pipe_file(path, json.dumps(item.to_dict(include_self_link=False), indent=2).encode())
    return path
