"""Reading embedding stores back: :func:`open_embeddings` decodes every data type to float32."""

from __future__ import annotations

import os

from xterrafm._imports import import_gate
from xterrafm.errors import NotAStoreError
from xterrafm.store.encoding import INT8_NODATA, SCALES_VAR
from xterrafm.store.layout import VAR, read_fingerprint

with import_gate():
    import numpy as np
    import xarray as xr

__all__ = ["crs_groups", "open_embeddings"]

#: Root-group attribute of multi-CRS stores listing their groups (see xterrafm.batch.job).
_CRS_GROUPS_ATTR = "xterrafm_crs_groups"


def crs_groups(store: str | os.PathLike) -> list[str]:
    """The per-CRS groups of a multi-CRS store (``[]`` for a single-CRS store)."""
    with import_gate():
        import zarr

    try:
        attrs = zarr.open_group(str(store), mode="r").attrs
    except Exception:  # noqa: BLE001 - not a group
        return []
    return list(attrs.get(_CRS_GROUPS_ATTR, []))


def open_embeddings(store: str | os.PathLike, group: str | None = None, *,
                    decode: bool = True) -> xr.DataArray:
    """Open the embeddings of a store written by :func:`xterrafm.embed_to_zarr`, lazily.

    Parameters
    ----------
    store : str or path
        Local path or fsspec URL of the store.
    group : str, optional
        The CRS group of a multi-CRS store (``"EPSG_32632"``); required there.
    decode : bool
        Return float32 values whatever the stored data type (int8 values times their per-cell
        scale, float16 widened; NaN for empty cells). False returns the stored values as they
        are: for int8 the quantised values, :data:`~xterrafm.store.encoding.INT8_NODATA` for
        empty cells (their scales are the store's ``scales`` variable).

    Returns
    -------
    DataArray
        Dask-backed ``(time, embedding, y, x)`` with the CRS (``spatial_ref``), coordinates
        and provenance attrs of the store; ``attrs["stored_dtype"]`` names the stored type.

    Raises
    ------
    NotAStoreError
        ``store`` (or ``group``) holds no embedding store; for a multi-CRS store without
        ``group``, the message lists its groups.
    """
    path = str(store) if group is None else f"{str(store).rstrip('/')}/{group}"
    if read_fingerprint(path) is None:
        groups = crs_groups(store) if group is None else []
        if groups:
            raise NotAStoreError(f"{store} holds one embedding store per CRS; pass group= one "
                                 f"of {groups}")
        raise NotAStoreError(f"{path} is not an xterrafm embedding store")
    ds = xr.open_zarr(path, decode_coords="all", mask_and_scale=False)
    emb = ds[VAR]
    stored = str(emb.dtype)
    if decode and stored == "int8":
        attrs = dict(emb.attrs)
        scaled = emb.astype(np.float32) * ds[SCALES_VAR].astype(np.float32)
        emb = scaled.where(emb != INT8_NODATA).transpose(*emb.dims).astype(np.float32)
        emb.attrs, emb.name = attrs, VAR
    elif decode and stored != "float32":
        emb = emb.astype(np.float32)
    elif not decode and stored == "int8":
        emb.attrs["nodata"] = INT8_NODATA
    emb.attrs["stored_dtype"] = stored
    for key in ("_FillValue", "missing_value"):
        emb.attrs.pop(key, None)
    return emb
