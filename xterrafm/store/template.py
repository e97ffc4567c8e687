"""The template of an embedding store: metadata, coordinates and attrs, before any block.

:func:`prepare_store` writes it (or checks the one already there against this run's
fingerprint). The default Zarr format is 2 with Blosc/Zstandard compression: the GDAL that the
rasterio wheels ship (3.10) reads it (``rasterio.open('ZARR:"emb.zarr":/embeddings')``),
which it cannot for Zarr v3 ("Unsupported codec: bytes"); ``zarr_format=3`` remains available
for readers that need it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

from xterrafm._imports import import_gate
from xterrafm.embedding.plan import EmbedPlan
from xterrafm.errors import NotAStoreError, StoreMismatchError, UsageError
from xterrafm.store.conventions import group_attrs
from xterrafm.store.encoding import SCALES_VAR, StoreEncoding
from xterrafm.store.layout import (
    FINGERPRINT_ATTR,
    META_DIR,
    VAR,
    fingerprint_diff,
    marker_paths,
    read_fingerprint,
    store_fingerprint,
    store_fs,
    store_path,
)

with import_gate():
    import dask.array as da
    import xarray as xr

__all__ = ["DEFAULT_ZARR_FORMAT", "consolidate", "prepare_store"]

#: Zarr format of new stores (2: readable by the GDAL in the rasterio wheels).
DEFAULT_ZARR_FORMAT = 2


def consolidate(store: str) -> None:
    """Consolidate a group's metadata (attrs included) so that readers need no listing."""
    with import_gate():
        import zarr

    with warnings.catch_warnings():
        # consolidated metadata is a zarr-python extension for v3; readers that lack it list
        # the store instead
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(store))


def _template(emb: xr.DataArray, plan: EmbedPlan, encoding: StoreEncoding,
              zarr_format: int) -> tuple[xr.Dataset, dict]:
    """The dataset of placeholders (same shape, chunks and stored dtype) and its encoding."""
    chunks = [c[0] for c in emb.data.chunks]
    placeholder = da.empty(emb.shape, chunks=emb.data.chunks, dtype=encoding.dtype)
    var = emb.copy(data=placeholder)
    var.attrs = {**emb.attrs, **encoding.array_attrs()}
    ds = var.to_dataset(name=VAR)
    comp = [encoding.compressor(zarr_format)]
    enc: dict = {VAR: {"chunks": chunks, "compressors": comp,
                       "_FillValue": encoding.fill_value}}
    if encoding.dtype == "int8":
        axis = emb.dims.index("embedding")
        sdims = tuple(d for d in emb.dims if d != "embedding")
        schunks = tuple(c for i, c in enumerate(emb.data.chunks) if i != axis)
        shape = tuple(n for i, n in enumerate(emb.shape) if i != axis)
        ds[SCALES_VAR] = xr.DataArray(
            da.empty(shape, chunks=schunks, dtype="float32"), dims=sdims,
            attrs={"long_name": "per-cell dequantisation scale of embeddings",
                   "description": "embeddings (float) = embeddings (int8) * scales; NaN where "
                   "the cell is empty"})
        enc[SCALES_VAR] = {"chunks": [c[0] for c in schunks], "compressors": comp,
                           "_FillValue": float("nan")}
    if "spatial_ref" in ds.coords:
        for name in encoding.arrays:
            enc[name]["grid_mapping"] = "spatial_ref"  # CRS survives decode_coords="all"
    return ds, enc


def prepare_store(emb: xr.DataArray, plan: EmbedPlan, store: str, *, overwrite: bool = False,
                  zarr_format: int = DEFAULT_ZARR_FORMAT, encoding: StoreEncoding | None = None,
                  sources: Sequence[str] | None = None) -> str:
    """Make ``store`` ready to receive the blocks of ``emb``: a new template, or a resume.

    Parameters
    ----------
    emb : DataArray
        Lazy ``(time, embedding, y, x)`` float32 embeddings of ``plan``.
    plan : EmbedPlan
        Its plan (the fingerprint is :func:`~xterrafm.store.layout.store_fingerprint` of
        ``plan.fingerprint`` and the data type).
    store : str or path
        Local path or fsspec URL of the Zarr store.
    overwrite : bool
        Delete an existing store first (its blocks are lost).
    zarr_format : int
        Zarr format of a new store (2 by default: readable by GDAL).
    encoding : StoreEncoding, optional
        Data type of the stored embeddings (default float32).
    sources : sequence of str, optional
        Source items or files, for ``geoemb:source_data``.

    Returns
    -------
    str
        ``"new"`` (template written) or ``"resume"`` (existing store with the same fingerprint).

    Raises
    ------
    StoreMismatchError
        The store was written with other settings (the message lists them).
    NotAStoreError
        The path holds something that is not an embedding store, or blocks but no complete
        template.
    """
    if zarr_format not in (2, 3):
        raise UsageError(f"zarr_format must be 2 or 3; got {zarr_format!r}")
    encoding = encoding or StoreEncoding()
    store = str(store)
    fs, root = store_fs(store)
    fp = store_fingerprint(plan.fingerprint, encoding.dtype)
    meta = store_path(root, META_DIR)
    if fs.exists(root) and overwrite:
        fs.rm(root, recursive=True)
    if fs.exists(root) and fs.ls(root):
        old = read_fingerprint(store)
        if old is None:
            raise NotAStoreError(
                f"{store} exists and is not an xterrafm embedding store (no {FINGERPRINT_ATTR} "
                "in its Zarr group attrs); choose another path or pass overwrite=True")
        diffs = fingerprint_diff(old, fp)
        if diffs:
            raise StoreMismatchError(
                f"refusing to resume into {store}: it was written with different settings: "
                + "; ".join(diffs) + ". Use the same settings, another store, or overwrite=True.")
        if fs.exists(store_path(meta, "template.done")):
            return "resume"
        if marker_paths(fs, root):
            raise NotAStoreError(f"{store} has written blocks but no complete template; "
                                 "pass overwrite=True to start again")
    # the template needs only shape, chunks and dtype: placeholders of the same chunks spare
    # xarray materialising the embedding graph just to write metadata
    ds, enc = _template(emb, plan, encoding, zarr_format)
    ds.to_zarr(store, mode="w", compute=False, zarr_format=zarr_format, consolidated=False,
               encoding=enc)
    with import_gate():
        import zarr

    group = zarr.open_group(store, mode="r+")
    group.attrs.update({FINGERPRINT_ATTR: json.dumps(fp, sort_keys=True),
                        **group_attrs(plan, encoding, sources)})
    consolidate(store)
    fs.makedirs(store_path(meta, "blocks"), exist_ok=True)  # after to_zarr(mode="w") cleared it
    fs.pipe_file(store_path(meta, "template.done"), b"ok")
    return "new"
