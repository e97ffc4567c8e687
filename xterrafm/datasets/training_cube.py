"""A synthetic scene written straight into a Zarr training cube (pretraining and its evidence).

Used by ``python -m xterrafm.pretrain`` when no ``--data`` is given, and by the kNN evidence
(:mod:`xterrafm.pretrain.evidence`) for held-out scenes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_synthetic_training_cube"]


def write_synthetic_training_cube(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    size: int = 896,
    n_dates: int = 2,
    modalities: Sequence[str] = ("s2_l2a", "s2_l1c", "s1"),
    chunk_px: int = 224,
    **scene_kwargs: Any,
) -> Path:
    """Generate a synthetic scene and write its training cube, unless one is already there.

    Parameters
    ----------
    folder : path-like
        Gets ``scene/`` (COGs and STAC) and ``training_cube.zarr``.
    seed : int
        Seed of the scene (another seed is another landscape: a held-out scene).
    size : int
        Side of the square scene in 10 m pixels.
    n_dates : int
        Acquisition dates.
    modalities : sequence of str
        Modalities to simulate and put in the cube (with the land-cover map).
    chunk_px : int
        Spatial chunk side of the cube in pixels.
    **scene_kwargs
        Passed to :func:`xterrafm.datasets.make_synthetic_scene` (e.g. ``nodata_date=None``).

    Returns
    -------
    pathlib.Path
        ``folder/training_cube.zarr``. The cube is written under a temporary name and renamed,
        so a cube found there is complete and is reused as it is.
    """
    from xterrafm.datasets.scene import make_synthetic_scene
    from xterrafm.io.grid import build_training_cube, write_training_cube

    folder = Path(folder)
    cube_path = folder / "training_cube.zarr"
    if (cube_path / "zarr.json").exists():
        return cube_path
    scene = make_synthetic_scene(folder / "scene", seed=seed, width=size, height=size,
                                 n_dates=n_dates, modalities=tuple(modalities), overwrite=True,
                                 **scene_kwargs)
    sources = {m: scene.item_collections[m] for m in scene.modalities}
    cube = build_training_cube(scene.geobox, landcover=scene.landcover_path, chunk_px=chunk_px,
                               **sources)
    tmp = cube_path.with_name(cube_path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_training_cube(cube, tmp)
    os.replace(tmp, cube_path)
    return cube_path
