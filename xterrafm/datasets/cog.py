"""Writing single-band Cloud-Optimised GeoTIFFs with rasterio."""

from __future__ import annotations

from pathlib import Path

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np
    import rasterio
    from odc.geo.geobox import GeoBox

__all__ = ["write_cog"]


def write_cog(
    path: Path,
    data: np.ndarray,
    geobox: GeoBox,
    nodata: float,
    overview_resampling: str = "average",
    blocksize: int = 256,
) -> Path:
    """Write one band as a tiled, deflate-compressed COG (GDAL ``COG`` driver).

    Parameters
    ----------
    path : pathlib.Path
        Output file; parent folders are created.
    data : numpy.ndarray, shape (height, width)
        Pixels; dtype is kept (uint8, uint16 or float32).
    geobox : odc.geo.geobox.GeoBox
        Grid of ``data`` (CRS and geotransform); its shape must equal ``data.shape``.
    nodata : float
        Nodata value written to the file (``nan`` for float data).
    overview_resampling : str
        GDAL resampling for overviews: ``"average"`` for measurements, ``"nearest"`` for classes.
    blocksize : int
        Internal tile size in pixels.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if data.ndim != 2 or tuple(data.shape) != tuple(geobox.shape):
        raise ValueError(f"data shape {data.shape} does not match grid shape {tuple(geobox.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    predictor = 3 if np.issubdtype(data.dtype, np.floating) else 2
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs=str(geobox.crs),
        transform=geobox.transform,
        nodata=nodata,
        blocksize=blocksize,
        compress="deflate",
        predictor=predictor,
        overviews="auto",
        overview_resampling=overview_resampling,
        num_threads=1,
    ) as dst:
        dst.write(data, 1)
    return path
