"""Turning embedding cubes and label rasters into (features, labels) pairs for probes.

An xterrafm embedding cube (``ds.terrafm.embed(...)``, or a store written by
``embed_to_zarr``) is a DataArray with dims ``(time?, embedding, y, x)`` whose ``y``/``x`` are
the centres of windows (``level="tile"``) or patches (``level="patch"``), geo-referenced with
a CRS. A label raster (for example a land-cover map) may sit on any grid and CRS. Labels are
brought onto the embedding grid by MAJORITY (GDAL ``mode`` resampling) over each embedding
pixel's footprint on the ground:

- ``level="patch"`` and ``level="tile"`` with ``stride == tile``: the footprint is the grid
  cell itself, so one reprojection onto the embedding GeoBox with ``Resampling.mode`` does it.
- ``level="tile"`` with ``stride < tile``: windows overlap and the footprint (``tile`` px) is
  ``m = tile / stride`` grid cells wide. The windows whose row and column indices have the same
  remainders modulo ``m`` do not overlap and form a grid of their own with cells of the
  footprint's size; each of those ``m²`` interleaved grids gets its own mode reprojection.
  ``tile`` must be a multiple of ``stride``.

Footprint and step come from the cube's attrs (``level``, ``tile``, ``stride``, and
``patch_size`` defaulting to 16); without them the footprint is taken to be the grid cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.errors import InputError

with import_gate():
    import numpy as np
    import odc.geo.xr  # noqa: F401  (registers .odc)
    import rasterio
    import rasterio.warp
    import rioxarray
    import xarray as xr
    from affine import Affine
    from rasterio.enums import Resampling

__all__ = [
    "DEFAULT_MAX_CLASSES",
    "LABEL_NODATA",
    "LabelledSamples",
    "check_class_labels",
    "embedding_footprint",
    "labels_to_embedding_grid",
    "labelled_samples",
    "open_embedding_cube",
    "open_label_raster",
]

#: Value marking "no label" on the embedding grid (labels must not use it).
LABEL_NODATA = -1

#: Most distinct classes a label raster may hold by default: more means it is not a class map
#: (a reflectance band, an elevation model, a count), whose "classes" a probe would score
#: meaninglessly. Pass ``max_classes=`` (``--max-classes``) for a larger legend.
DEFAULT_MAX_CLASSES = 100


@dataclass(frozen=True)
class LabelledSamples:
    """Feature rows with their labels and where they come from on the embedding grid.

    Attributes
    ----------
    x : numpy.ndarray of float32, shape (N, D)
        Embeddings, one row per (time, y, x) embedding pixel with a label and no NaN.
    y : numpy.ndarray of int64, shape (N,)
        Label of each row.
    rows, cols : numpy.ndarray of int64, shape (N,)
        Grid row and column of each row (for spatial splits).
    times : numpy.ndarray of int64, shape (N,)
        Time index of each row (all 0 when the cube has no ``time`` dim).
    """

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


def open_embedding_cube(store: str | os.PathLike, variable: str | None = None) -> xr.DataArray:
    """Open an embedding cube written to Zarr as a lazy DataArray with its CRS.

    Parameters
    ----------
    store : path-like
        Zarr store written by xterrafm's ``embed_to_zarr``.
    variable : str, optional
        Name of the data variable; default the only variable with an ``embedding`` dim.

    Returns
    -------
    xarray.DataArray
        Dims ``(time?, embedding, y, x)``, dask-backed.
    """
    ds = xr.open_zarr(store, decode_coords="all")
    if variable is None:
        names = [n for n, v in ds.data_vars.items() if "embedding" in v.dims]
        if len(names) != 1:
            raise ValueError(
                f"{store}: expected exactly one variable with an 'embedding' dim, found "
                f"{names or list(ds.data_vars)}; pass variable=..."
            )
        variable = names[0]
    elif variable not in ds.data_vars:
        raise ValueError(f"{store}: no variable {variable!r}; have {list(ds.data_vars)}")
    da = ds[variable]
    da.attrs = {**ds.attrs, **da.attrs}
    return da


def open_label_raster(path: str | os.PathLike) -> xr.DataArray:
    """Read a single-band label raster (GeoTIFF/COG) into memory as a 2-D DataArray.

    Returns
    -------
    xarray.DataArray
        Dims ``(y, x)``, the file's integer dtype, CRS and nodata kept (``rio.nodata``).
    """
    da = rioxarray.open_rasterio(path, masked=False)
    if da.sizes.get("band", 1) != 1:
        raise ValueError(f"{path}: a label raster must have one band, found {da.sizes['band']}")
    return da.squeeze("band", drop=True).load()


def embedding_footprint(embeddings: xr.DataArray) -> tuple[int, int]:
    """Footprint of one embedding pixel and the grid step, in input pixels, from the attrs.

    Returns
    -------
    (footprint, step) : tuple of int
        ``(tile, stride)`` for ``level="tile"`` (stride defaults to tile), ``(patch, patch)``
        for ``level="patch"``; ``(1, 1)`` when the attrs do not say (footprint = grid cell).
    """
    attrs = embeddings.attrs
    level = attrs.get("level")
    if level == "patch":
        p = int(attrs.get("patch_size", 16))
        return p, p
    if level == "tile" or "tile" in attrs:
        tile = int(attrs["tile"])
        stride = attrs.get("stride")
        stride = tile if stride is None else int(stride)
        return tile, stride
    return 1, 1


def _label_array(labels: xr.DataArray | str | os.PathLike) -> xr.DataArray:
    if not isinstance(labels, xr.DataArray):
        labels = open_label_raster(labels)
    if "band" in labels.dims:
        if labels.sizes["band"] != 1:
            raise ValueError(f"labels must have one band, found {labels.sizes['band']}")
        labels = labels.squeeze("band", drop=True)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (y, x), got dims {labels.dims}")
    return labels


def check_class_labels(values: np.ndarray, invalid: np.ndarray, *, source: str,
                       max_classes: int = DEFAULT_MAX_CLASSES) -> int:
    """Refuse a raster that is not a map of class codes; return its number of classes.

    Parameters
    ----------
    values : ndarray
        The raster's values.
    invalid : ndarray of bool
        Pixels that are nodata (ignored).
    source : str
        What to name in messages (the file).
    max_classes : int
        Most distinct codes accepted.

    Raises
    ------
    InputError
        Non-integer values, no labelled pixel, or more than ``max_classes`` distinct codes.
    """
    valid = values[~invalid]
    if valid.size == 0:
        raise InputError(f"{source}: every pixel is nodata; no labels to score")
    if not np.issubdtype(values.dtype, np.integer) and not np.all(valid == np.round(valid)):
        raise InputError(f"{source}: labels must be integer class codes; the raster holds "
                         f"non-integer values such as {float(valid[valid != np.round(valid)][0])!r}"
                         " (a continuous raster, not a class map)")
    n = int(np.unique(valid).size)
    if n > max_classes:
        raise InputError(f"{source}: {n} distinct values: this looks like a continuous raster "
                         f"(reflectance, elevation, counts), not a class map; a label raster "
                         f"holds at most {max_classes} classes (pass max_classes= / "
                         "--max-classes for a larger legend)")
    return n


def labels_to_embedding_grid(
    labels: xr.DataArray | str | os.PathLike,
    embeddings: xr.DataArray,
    *,
    nodata: int | float | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> xr.DataArray:
    """Majority label of each embedding pixel's footprint (see the module docstring).

    Parameters
    ----------
    labels : xarray.DataArray or path-like
        Integer label raster with a CRS (``labels.rio.crs``); dims ``(y, x)`` or
        ``(band=1, y, x)``; any grid and CRS. A path is read with rioxarray.
    embeddings : xarray.DataArray
        Embedding cube with ``y``/``x`` window/patch centres and a CRS; only its grid and
        attrs are used (nothing is computed).
    nodata : int or float, optional
        Label value meaning "unlabelled" (ignored by the majority); default the raster's
        nodata (``rio.nodata``), if any.
    max_classes : int
        Most distinct class codes accepted (see :func:`check_class_labels`).

    Returns
    -------
    xarray.DataArray of int32, dims (y, x)
        On the embedding grid (same ``y``/``x`` coords); `LABEL_NODATA` (-1) where the
        footprint holds no label.
    """
    source = str(labels) if isinstance(labels, (str, os.PathLike)) else "the label raster"
    lab = _label_array(labels)
    src_crs = lab.rio.crs
    if src_crs is None:
        raise ValueError(f"{source} has no CRS (write one with labels.rio.write_crs)")
    src_transform = lab.rio.transform(recalc=True)
    if nodata is None:
        nodata = lab.rio.nodata
    values = np.asarray(lab.values)
    src = values.astype(np.float64)
    invalid = np.isnan(src)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        invalid |= src == nodata
    check_class_labels(values, invalid, source=source, max_classes=max_classes)
    if np.any(src[~invalid] == LABEL_NODATA):
        raise ValueError(f"labels use the value {LABEL_NODATA}, reserved for 'no label'")
    src_int = np.where(invalid, LABEL_NODATA, src).astype(np.int32)

    emb_gb = embeddings.odc.geobox
    if emb_gb is None:
        raise ValueError("the embedding cube has no CRS/geobox (spatial_ref missing)")
    dst_crs = emb_gb.crs.to_wkt()
    aff: Affine = emb_gb.affine
    if aff.b != 0 or aff.d != 0:
        raise ValueError("rotated embedding grids are not supported")
    ny, nx = emb_gb.shape
    footprint, step = embedding_footprint(embeddings)
    if footprint % step:
        raise ValueError(
            f"window footprint {footprint} px is not a multiple of the step {step} px; the "
            "majority over overlapping windows needs tile to be a multiple of stride"
        )
    m = footprint // step
    out = np.full((ny, nx), LABEL_NODATA, np.int32)
    for a in range(m):
        for b in range(m):
            nrow, ncol = -(-(ny - a) // m), -(-(nx - b) // m)
            if nrow <= 0 or ncol <= 0:
                continue
            # centre of window (a, b), minus half a footprint: the corner of its footprint
            cx, cy = aff.c + (b + 0.5) * aff.a, aff.f + (a + 0.5) * aff.e
            x0 = cx - m * aff.a / 2
            y0 = cy - m * aff.e / 2
            dst_transform = Affine(m * aff.a, 0.0, x0, 0.0, m * aff.e, y0)
            dst = np.full((nrow, ncol), LABEL_NODATA, np.int32)
            rasterio.warp.reproject(
                source=src_int,
                destination=dst,
                src_transform=src_transform,
                src_crs=src_crs,
                src_nodata=LABEL_NODATA,
                dst_transform=dst_transform,
                dst_crs=dst_crs,
                dst_nodata=LABEL_NODATA,
                resampling=Resampling.mode,
            )
            out[a::m, b::m] = dst
    return xr.DataArray(
        out,
        dims=("y", "x"),
        coords={"y": embeddings["y"].values, "x": embeddings["x"].values},
        attrs={"nodata": LABEL_NODATA, "resampling": "mode", "footprint_px": footprint},
        name="label",
    )


def labelled_samples(
    embeddings: xr.DataArray,
    labels: xr.DataArray | str | os.PathLike,
    *,
    nodata: int | float | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> LabelledSamples:
    """(features, label) rows from an embedding cube and a label raster on any grid.

    Each embedding pixel (at each time step) becomes one row labelled with the majority label
    of its footprint; rows whose embedding holds NaN (skipped windows) or whose footprint has
    no label are dropped. The embeddings are computed here (``.values``).

    Parameters
    ----------
    embeddings : xarray.DataArray
        Dims ``(time?, embedding, y, x)`` with a CRS.
    labels, nodata, max_classes
        As in `labels_to_embedding_grid` (the labels are checked before any embedding is
        read).

    Returns
    -------
    LabelledSamples
    """
    if "embedding" not in embeddings.dims:
        raise ValueError(f"embeddings need an 'embedding' dim; got dims {embeddings.dims}")
    grid_labels = labels_to_embedding_grid(labels, embeddings, nodata=nodata,
                                           max_classes=max_classes).values
    emb = embeddings if "time" in embeddings.dims else embeddings.expand_dims("time")
    emb = emb.transpose("time", "y", "x", "embedding")
    arr = np.asarray(emb.values, dtype=np.float32)  # (T, ny, nx, D)
    t_idx, r_idx, c_idx = np.meshgrid(
        np.arange(arr.shape[0]), np.arange(arr.shape[1]), np.arange(arr.shape[2]), indexing="ij"
    )
    keep = np.isfinite(arr).all(axis=-1) & (grid_labels[None] != LABEL_NODATA)
    return LabelledSamples(
        x=arr[keep],
        y=np.broadcast_to(grid_labels[None], keep.shape)[keep].astype(np.int64),
        rows=r_idx[keep].astype(np.int64),
        cols=c_idx[keep].astype(np.int64),
        times=t_idx[keep].astype(np.int64),
    )
