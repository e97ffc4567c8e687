"""The main job on embedded defaults: synthetic scene → LocalCluster → Zarr store → PNG preview.

Run it with ``python -c "from xterrafm.embedding.demo import main; main()"`` or call
:func:`run_demo`. Everything it needs is generated locally (no downloads): a deterministic
synthetic Sentinel-2 L2A scene (COGs + static STAC), the seeded random initialisation of the
encoder unless ``weights`` names a file.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["DemoResult", "main", "pca_rgb", "run_demo"]


@dataclass
class DemoResult:
    """Where :func:`run_demo` put things and what it did.

    Attributes
    ----------
    scene : Path
        Folder of the synthetic scene (COGs, STAC JSON).
    store : Path
        Zarr store of the embeddings.
    preview : Path
        PNG: first three principal components of the embeddings as RGB (first date).
    summary : dict
        :class:`~xterrafm.embedding.zarr_output.EmbedSummary` as a dict.
    shape : tuple
        Shape of the embeddings ``(time, embedding, y, x)``.
    """

    scene: Path
    store: Path
    preview: Path
    summary: dict
    shape: tuple


def pca_rgb(emb: np.ndarray, upscale: int = 8) -> np.ndarray:
    """First three principal components of an embedding image as an RGB uint8 image.

    Parameters
    ----------
    emb : ndarray, shape (D, H, W)
        Embeddings; NaN cells become black.
    upscale : int
        Nearest-neighbour enlargement factor for viewing.

    Returns
    -------
    ndarray uint8, shape (H * upscale, W * upscale, 3)
    """
    d, h, w = emb.shape
    flat = emb.reshape(d, -1).T.astype(np.float64)
    ok = np.isfinite(flat).all(axis=1)
    rgb = np.zeros((h * w, 3), dtype=np.float64)
    if ok.sum() >= 2:
        x = flat[ok] - flat[ok].mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        pcs = x @ vt[: min(3, vt.shape[0])].T
        lo, hi = np.percentile(pcs, 2, axis=0), np.percentile(pcs, 98, axis=0)
        pcs = np.clip((pcs - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
        rgb[ok, : pcs.shape[1]] = pcs
    img = (rgb.reshape(h, w, 3) * 255).round().astype(np.uint8)
    return img.repeat(upscale, axis=0).repeat(upscale, axis=1)


def run_demo(out_dir: str | Path, *, model: str = "terrafm-b", weights: Any = None,
             modality: str = "s2_l2a", level: str = "patch", tile: int = 224,
             stride: int | None = None, width: int = 448, height: int = 448, n_dates: int = 2,
             seed: int = 0, n_workers: int = 1, threads_per_worker: int | None = None,
             client: Any = None,
             progress: bool = True, overwrite: bool = True) -> DemoResult:
    """Generate the synthetic scene, embed it on a LocalCluster, write Zarr and a PNG preview.

    Parameters
    ----------
    out_dir : path
        Output folder (created): ``scene/``, ``embeddings.zarr``, ``preview.png``,
        ``summary.json``.
    model, weights, modality, level, tile, stride
        As for :func:`xterrafm.embedding.embed` (default: terrafm-b, seeded random weights,
        Sentinel-2 L2A, patch level so that the preview has one cell per 16 px).
    width, height, n_dates, seed
        Size, dates and seed of the synthetic scene.
    n_workers, threads_per_worker : int
        LocalCluster (processes) started when no ``client`` is given; default one worker
        with a thread per core (``threads_per_worker=None``).
    client : distributed.Client, optional
        Use this client instead of starting a cluster.
    progress : bool
        Show progress bars.
    overwrite : bool
        Replace an existing store (False: resume into it).

    Returns
    -------
    DemoResult
    """
    with import_gate():
        from PIL import Image

    from xterrafm.datasets.scene import make_synthetic_scene
    from xterrafm.embedding.zarr_output import embed_to_zarr
    from xterrafm.io.stac import load_stac

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = make_synthetic_scene(out / "scene", seed=seed, width=width, height=height,
                                 n_dates=n_dates, overwrite=True)
    cube = load_stac(scene.item_collections[modality], modality=modality)
    store = out / "embeddings.zarr"
    kwargs = dict(model=model, weights=weights, level=level, tile=tile, stride=stride,
                  overwrite=overwrite, progress=progress)
    if client is None:
        with import_gate():
            from distributed import Client, LocalCluster

        with LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                          processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as own:
            summary = embed_to_zarr(cube, store, client=own, **kwargs)
    else:
        summary = embed_to_zarr(cube, store, client=client, **kwargs)

    with import_gate():
        import xarray as xr

    emb = xr.open_zarr(store, decode_coords="all")["embeddings"]
    first = emb.isel(time=0).values if "time" in emb.dims else emb.values
    preview = out / "preview.png"
    Image.fromarray(pca_rgb(first, upscale=max(1, 448 // max(first.shape[1:])))).save(preview)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return DemoResult(scene=scene.root, store=store, preview=preview,
                      summary=summary.to_dict(), shape=tuple(emb.shape))


def main(argv: list[str] | None = None) -> DemoResult:
    """Command-line entry point: ``python -m xterrafm.embedding.demo [OUT_DIR] [--model ...]``."""
    p = argparse.ArgumentParser(description="Embed the synthetic scene with TerraFM on a "
                                            "LocalCluster; write Zarr and a PNG preview.")
    p.add_argument("out_dir", nargs="?", default="xterrafm-demo")
    p.add_argument("--model", default="terrafm-b")
    p.add_argument("--weights", default=None, help="weights file (.safetensors/.pth) or 'hf'; "
                                                   "default: seeded random initialisation")
    p.add_argument("--level", default="patch", choices=["tile", "patch"])
    p.add_argument("--tile", type=int, default=224)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    res = run_demo(a.out_dir, model=a.model, weights=a.weights, level=a.level, tile=a.tile,
                   stride=a.stride, n_workers=a.workers, progress=not a.quiet)
    info = {k: str(v) for k, v in asdict(res).items() if k != "summary"}
    print(json.dumps({**info, "summary": res.summary}, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
