"""One ``(time, band, y, x)`` dask array in physical units from a reader's per-band arrays.

:func:`stack_calibrated` builds it with one task per block: the task takes the block's band
chunks as read (DN as float32), writes each band once into the block's output, applies the
band's scale and offset, turns nodata into NaN, converts decibels to linear power and masks
the cloud classes of an optional SCL band. Compared with the same steps as separate array
operations followed by a rechunk along ``band``, nothing is copied twice and the graph has one
task per block instead of one per band chunk plus a merge.

The arithmetic is that of the separate steps, in the same order and in float32:
``DN == nodata -> NaN``, ``DN * scale + offset``, ``10 ** (x / 10)`` where the unit was dB,
then ``NaN`` where SCL is one of the masked classes. This module never imports xarray.
"""

from __future__ import annotations

from collections.abc import Sequence

from xterrafm._imports import import_gate

with import_gate():
    import dask
    import dask.array as da
    import numpy as np

__all__ = ["calibrate_block", "stack_calibrated"]


def calibrate_block(*chunks: np.ndarray, scale: np.ndarray, offset: np.ndarray,
                    nodata: np.ndarray, db: np.ndarray,
                    mask_classes: Sequence[int] = ()) -> np.ndarray:
    """Calibrate and stack the band chunks of one block.

    Parameters
    ----------
    *chunks : ndarray, shape (T, H, W)
        One chunk per band as read (digital numbers), then the SCL chunk when
        ``mask_classes`` is not empty.
    scale, offset : ndarray float32, shape (T, B)
        Per time step and band: physical value = ``DN * scale + offset``.
    nodata : ndarray float32, shape (B,)
        Each band's nodata value (NaN: none beyond NaN itself).
    db : ndarray bool, shape (B,)
        Bands whose unit is decibels (converted to linear power).
    mask_classes : sequence of int
        SCL classes set to NaN in every band.

    Returns
    -------
    ndarray float32, shape (T, B, H, W)
    """
    n_bands = len(nodata)
    bands, scl = chunks[:n_bands], chunks[n_bands] if mask_classes else None
    t_len, h, w = bands[0].shape
    out = np.empty((t_len, n_bands, h, w), dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)[:, :, None, None]
    o = np.asarray(offset, dtype=np.float32)[:, :, None, None]
    for b, dn in enumerate(bands):
        band = out[:, b]
        np.multiply(dn, s[:, b], out=band, casting="same_kind")
        band += o[:, b]
        if not np.isnan(nodata[b]):
            band[dn == nodata[b]] = np.nan
        if db[b]:
            band /= np.float32(10.0)
            np.power(np.float32(10.0), band, out=band)
    if scl is not None:
        out[np.broadcast_to(np.isin(scl, list(mask_classes))[:, None], out.shape)] = np.nan
    return out


def stack_calibrated(bands: Sequence[da.Array], *, scale: np.ndarray, offset: np.ndarray,
                     nodata: np.ndarray, db: np.ndarray, scl: da.Array | None = None,
                     mask_classes: Sequence[int] = ()) -> da.Array:
    """The lazy ``(time, band, y, x)`` float32 stack of calibrated bands.

    Parameters
    ----------
    bands : sequence of dask arrays, shape (T, H, W)
        One per band, all with the same chunks (a reader's output on one grid).
    scale, offset, nodata, db
        As for :func:`calibrate_block` (``scale``/``offset`` cover all ``T`` time steps).
    scl : dask array, shape (T, H, W), optional
        The SCL band, chunked like ``bands``; used with ``mask_classes``.
    mask_classes : sequence of int
        SCL classes to mask (needs ``scl``).

    Returns
    -------
    dask.array.Array
        float32, chunks ``(bands' time chunks, (B,), bands' y chunks, bands' x chunks)``.
    """
    if mask_classes and scl is None:
        raise ValueError("mask_classes needs the scl band")
    t_chunks = bands[0].chunks[0]
    n_bands = len(bands)
    scale_t = da.from_array(np.asarray(scale, np.float32), chunks=(t_chunks, n_bands))
    offset_t = da.from_array(np.asarray(offset, np.float32), chunks=(t_chunks, n_bands))
    inputs = [x for band in bands for x in (band, "tyx")]
    if mask_classes:
        inputs += [scl, "tyx"]
    token = dask.base.tokenize([b.name for b in bands], scale, offset, nodata, db,
                               None if scl is None else scl.name, tuple(mask_classes))
    return da.blockwise(
        _calibrate_task, "tbyx", scale_t, "tb", offset_t, "tb", *inputs,
        dtype=np.float32, concatenate=True, name=f"calibrate-{token}",
        nodata=np.asarray(nodata, np.float32), db=np.asarray(db, bool),
        mask_classes=tuple(int(c) for c in mask_classes),
        meta=np.empty((0, 0, 0, 0), dtype=np.float32))


def _calibrate_task(scale: np.ndarray, offset: np.ndarray, *chunks: np.ndarray,
                    nodata: np.ndarray, db: np.ndarray,
                    mask_classes: tuple[int, ...]) -> np.ndarray:
    return calibrate_block(*chunks, scale=scale, offset=offset, nodata=nodata, db=db,
                           mask_classes=mask_classes)
