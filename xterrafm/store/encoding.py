"""How embeddings are stored: the store's data type, its compressor and the int8 quantisation.

Three data types (``dtype=`` of :func:`xterrafm.embed_to_zarr`, ``--dtype`` of the CLI):

``"float32"`` (default)
    The model's output as it is; NaN where a cell is empty.
``"float16"``
    Half the bytes; NaN where empty. A value beyond the float16 range (65504) is refused with
    :class:`~xterrafm.errors.StoreError` naming the block, never stored as an infinity.
``"int8"``
    A quarter of the bytes plus one float32 per cell: each cell's vector ``v`` is stored as
    ``q = round(v / s)`` with ``s = max|v| / 127`` (``q`` in ``[-127, 127]``), ``s`` in the
    ``scales`` array ``(time, y, x)``. Empty cells hold ``q = -128`` (:data:`INT8_NODATA`, the
    Zarr fill value) and ``s = NaN``. Decoding is ``v = q * s``
    (:func:`xterrafm.store.read.open_embeddings` does it); the geo-embeddings convention
    calls this ``per_pixel_scale``. The direction of every vector, which cosine similarity
    uses, is kept: each component is off by at most half a step, ``max|v| / 254``.

Compression is Blosc with Zstandard and byte shuffling, which the GDAL in the rasterio wheels
decodes (Zarr v2; see :mod:`xterrafm.store.template`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import StoreError, UsageError

with import_gate():
    import numpy as np

__all__ = [
    "DTYPES",
    "INT8_NODATA",
    "SCALES_VAR",
    "StoreEncoding",
    "decode_int8",
    "encode_int8",
]

#: Data types a store can hold embeddings in.
DTYPES = ("float32", "float16", "int8")
#: Quantised value of an empty cell in int8 stores (the Zarr fill value).
INT8_NODATA = -128
#: Name of the per-cell scale array of int8 stores.
SCALES_VAR = "scales"
#: Largest quantised magnitude.
_QMAX = 127


def encode_int8(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantise embeddings to int8 with one scale per cell.

    Parameters
    ----------
    values : ndarray of float
        Embeddings, NaN for empty cells (a cell is NaN in every component or in none).
    axis : int
        The embedding axis.

    Returns
    -------
    q : ndarray of int8, the shape of ``values``
        ``round(values / scale)``, :data:`INT8_NODATA` for empty cells.
    scale : ndarray of float32, ``values``' shape without ``axis``
        ``max |values| / 127`` along ``axis`` (1.0 for an all-zero vector), NaN for empty cells.
    """
    v = np.asarray(values, dtype=np.float32)
    empty = ~np.isfinite(v).all(axis=axis)
    with np.errstate(invalid="ignore"):
        amax = np.max(np.abs(np.where(np.isfinite(v), v, 0)), axis=axis)
    scale = np.where(amax > 0, amax / _QMAX, 1.0).astype(np.float32)
    scale[empty] = np.nan
    safe = np.where(empty, 1.0, scale)
    with np.errstate(invalid="ignore"):
        q = np.rint(np.where(np.isfinite(v), v, 0) / np.expand_dims(safe, axis))
    q = np.clip(q, -_QMAX, _QMAX).astype(np.int8)
    q[np.broadcast_to(np.expand_dims(empty, axis), q.shape)] = INT8_NODATA
    return q, scale


def decode_int8(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """float32 embeddings of int8 values and their per-cell scales (NaN for empty cells)."""
    out = np.asarray(q, dtype=np.float32) * np.expand_dims(np.asarray(scale, np.float32), axis)
    out[np.asarray(q) == INT8_NODATA] = np.nan
    return out


@dataclass(frozen=True)
class StoreEncoding:
    """The data type of a store and what follows from it.

    Attributes
    ----------
    dtype : {"float32", "float16", "int8"}
    """

    dtype: str = "float32"

    def __post_init__(self) -> None:
        try:
            dtype = np.dtype(self.dtype).name
        except TypeError:
            dtype = str(self.dtype)
        if dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {list(DTYPES)}; got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)

    @property
    def arrays(self) -> tuple[str, ...]:
        """Arrays each block writes: ``embeddings``, and ``scales`` for int8."""
        return ("embeddings", SCALES_VAR) if self.dtype == "int8" else ("embeddings",)

    @property
    def fill_value(self) -> float | int:
        """Value of an empty cell as stored."""
        return INT8_NODATA if self.dtype == "int8" else float("nan")

    def compressor(self, zarr_format: int) -> Any:
        """The compressor of every array: Blosc/Zstandard, byte shuffle (GDAL decodes it)."""
        if zarr_format == 2:
            with import_gate():
                from numcodecs import Blosc

            return Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
        with import_gate():
            from zarr.codecs import BloscCodec

        return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")

    def quantization(self) -> dict[str, Any] | None:
        """The ``geoemb:quantization`` object of int8 stores (None otherwise)."""
        if self.dtype != "int8":
            return None
        return {"method": "per_pixel_scale", "original_dtype": "float32",
                "quantized_dtype": "int8", "scale_array": SCALES_VAR, "nodata": "nan"}

    def array_attrs(self) -> dict[str, Any]:
        """Attributes of the ``embeddings`` array describing how to decode it."""
        if self.dtype != "int8":
            return {"xterrafm_dtype": self.dtype}
        return {"xterrafm_dtype": self.dtype, "quantization": "per_pixel_scale",
                "quantization_scale_array": SCALES_VAR, "quantization_nodata": INT8_NODATA,
                "quantization_decode": "embeddings * scales (NaN where embeddings == -128)"}

    def encode(self, block: np.ndarray, axis: int) -> Mapping[str, np.ndarray]:
        """The arrays to store for a float32 block (``axis``: its embedding axis).

        Raises
        ------
        StoreError
            float16: a finite value beyond the float16 range.
        """
        if self.dtype == "float32":
            return {"embeddings": np.asarray(block, dtype=np.float32)}
        if self.dtype == "float16":
            with np.errstate(over="ignore"):
                half = np.asarray(block, dtype=np.float16)
            over = np.isinf(half) & np.isfinite(block)
            if over.any():
                raise StoreError(
                    f"{int(over.sum())} embedding value(s) exceed the float16 range (largest "
                    f"magnitude {float(np.nanmax(np.abs(block))):.4g} > 65504); store them with "
                    "dtype='float32' or 'int8'")
            return {"embeddings": half}
        q, scale = encode_int8(block, axis)
        return {"embeddings": q, SCALES_VAR: scale}
