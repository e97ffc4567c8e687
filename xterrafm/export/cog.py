"""Cloud-Optimised GeoTIFFs of an embedding store: one per CRS and date.

Each file ``<stem>_<YYYYMMDDTHHMMSS>.tif`` holds the embeddings of one date on the store's
output grid, in the store's CRS: one float32 band per embedding dimension, named
``embedding_000``, ``embedding_001``, ... (band description and ``embedding_index`` tag),
nodata declared as NaN (empty cells), DEFLATE compression with the floating-point predictor,
pixel-interleaved tiles of at most about 16 MB (64 px for 768 dimensions, 256 px for 32),
and the store's provenance in the dataset tags. Int8 and float16 stores are decoded to
float32 (:func:`xterrafm.store.open_embeddings`). The file is first written block by block as a
tiled GeoTIFF, then copied into the COG layout by GDAL's COG driver, so memory stays at one
store chunk per step whatever the area.
"""

from __future__ import annotations

import os
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError
from xterrafm.export.items import export_item, export_sources, time_label, write_catalog

with import_gate():
    import numpy as np

__all__ = ["COG_MEDIA_TYPE", "band_name", "export_cog", "tile_size"]

#: Media type of a COG asset.
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
#: Provenance attrs written as dataset tags.
_TAGS = ("model", "weights_sha256", "modality", "level", "tile", "stride", "normalization",
         "min_valid", "stored_dtype", "xterrafm_version")


def band_name(index: int, width: int) -> str:
    """Name of the band of embedding dimension ``index`` (``embedding_007`` of 768)."""
    return f"embedding_{index:0{max(3, len(str(width - 1)))}d}"


def tile_size(width: int) -> int:
    """Tile side (a power of two, 16 to 512 px) keeping a pixel-interleaved float32 tile of
    ``width`` bands near 16 MB."""
    side = int(np.sqrt(16e6 / (4 * max(1, width))))
    return int(min(512, max(16, 2 ** int(np.log2(max(side, 1))))))


def _write_one(emb, t: int, path: Path) -> None:
    with import_gate():
        import rasterio
        import rasterio.shutil
        from rasterio.windows import Window

    one = emb.isel(time=t)
    dim, ny, nx = (int(n) for n in one.shape)
    tmp = path.with_name(path.name + ".tmp.tif")
    side = tile_size(dim)
    profile = {"driver": "GTiff", "width": nx, "height": ny, "count": dim,
               "dtype": "float32", "nodata": float("nan"), "crs": emb.rio.crs,
               "transform": emb.rio.transform(), "tiled": True, "blockxsize": side,
               "blockysize": side, "interleave": "pixel", "compress": "deflate",
               "predictor": 3, "BIGTIFF": "IF_SAFER"}
    ychunks = one.chunks[1] if one.chunks else (ny,)
    xchunks = one.chunks[2] if one.chunks else (nx,)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            for i in range(dim):
                dst.set_band_description(i + 1, band_name(i, dim))
                dst.update_tags(i + 1, embedding_index=str(i))
            dst.update_tags(time=str(np.datetime_as_string(one["time"].values, unit="s")),
                            **{k: str(emb.attrs[k]) for k in _TAGS if k in emb.attrs})
            y0 = 0
            for hy in ychunks:
                x0 = 0
                for wx in xchunks:
                    block = np.asarray(one[:, y0:y0 + hy, x0:x0 + wx].values, dtype=np.float32)
                    dst.write(block, window=Window(x0, y0, wx, hy))
                    x0 += wx
                y0 += hy
        rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                             BLOCKSIZE=side, BIGTIFF="IF_SAFER", OVERVIEWS="NONE")
    finally:
        if tmp.exists():
            tmp.unlink()


def export_cog(store: str | os.PathLike, out_dir: str | os.PathLike, *,
               group: str | None = None, overwrite: bool = False) -> list[Path]:
    """Export a store as one COG per CRS and date, with a STAC catalog of them.

    Parameters
    ----------
    store : str or path
        An embedding store (single- or multi-CRS).
    out_dir : str or path
        Folder for the files (created); ``catalog.json`` and one Item per file go there too.
    group : str, optional
        Export only this CRS group of a multi-CRS store.
    overwrite : bool
        Replace files that exist (default: refuse).

    Returns
    -------
    list of Path
        The COGs written.

    Raises
    ------
    UsageError
        A file exists (without ``overwrite``), or ``group`` is not in the store.
    NotAStoreError
        ``store`` is not an embedding store.
    """
    out_dir = Path(out_dir).absolute()
    sources = export_sources(store, group)
    plans = []
    for src in sources:
        for t, value in enumerate(np.atleast_1d(src.embeddings["time"].values)):
            plans.append((src, t, value, out_dir / f"{src.stem}_{time_label(value, t)}.tif"))
    existing = [str(p) for *_, p in plans if p.exists()]
    if existing and not overwrite:
        raise UsageError(f"export would replace {existing[:3]}; pass overwrite=True "
                         "(--overwrite) or another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, items = [], []
    for src, t, value, path in plans:
        _write_one(src.embeddings, t, path)
        written.append(path)
        items.append(export_item(path.stem, src.embeddings, [value], str(path), COG_MEDIA_TYPE,
                                 extra={"xterrafm:source_store": src.path,
                                        "xterrafm:nodata": "nan"}))
    write_catalog(out_dir, items, title=Path(str(store).rstrip("/")).name)
    return written
