"""Writers of small benchmark copies in the public formats (test helper, loaded by path).

* :func:`write_geobench_task`: a GEO-Bench classification task folder as the GEO-Bench
  writer lays it out: ``default_partition.json`` and one ``<name>.hdf5`` per sample, one
  int16 dataset per Sentinel-2 band (13, named like "02 - Blue") and the metadata pickled
  into the file's ``pickle`` attribute, ``str(pickle.dumps(...))``, holding GEO-Bench band
  objects (pickled under ``geobench.dataset`` names, as the real files are) and the label.
* :func:`write_eurosat_s1`: a Copernicus-Bench EuroSAT-S1 folder: ``eurosat-{split}.txt``
  lists of ``<Class>_<n>.jpg`` names and ``all_imgs/<Class>/<Class>_<n>.tif`` GeoTIFFs of two
  float32 bands (VV, VH) in dB.

Classes differ in brightness, so a working pipeline separates them even with random weights.
"""

from __future__ import annotations

import json
import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np

GEOBENCH_BANDS = ["01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red",
                  "05 - Vegetation Red Edge", "06 - Vegetation Red Edge",
                  "07 - Vegetation Red Edge", "08 - NIR", "08A - Vegetation Red Edge",
                  "09 - Water vapour", "10 - SWIR - Cirrus", "11 - SWIR", "12 - SWIR"]
EUROSAT_CLASSES = ["AnnualCrop", "Forest", "SeaLake"]


@contextmanager
def _fake_geobench():
    """Classes importable as ``geobench.dataset.*`` while pickling, like the real writer's."""
    module = types.ModuleType("geobench.dataset")

    class SpectralBand:
        def __init__(self, name: str, wavelength: float) -> None:
            self.name, self.wavelength, self.alt_names = name, wavelength, (name[:2],)

    class Sentinel2(SpectralBand):
        pass

    for cls in (SpectralBand, Sentinel2):
        cls.__module__, cls.__qualname__ = "geobench.dataset", cls.__name__
        setattr(module, cls.__name__, cls)
    saved = {k: sys.modules.get(k) for k in ("geobench", "geobench.dataset")}
    sys.modules["geobench"] = types.ModuleType("geobench")
    sys.modules["geobench.dataset"] = module
    try:
        yield module
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def geobench_metadata(label, extra: dict | None = None) -> bytes:
    """The pickled metadata of one sample (band objects, dates, the label)."""
    import datetime

    with _fake_geobench() as gb:
        meta = {name: {"band_info": gb.Sentinel2(name, 0.4 + 0.1 * i),
                       "date": datetime.date(2018, 6, 1), "spatial_resolution": 10,
                       "meta_info": None, "transform": None, "crs": None}
                for i, name in enumerate(GEOBENCH_BANDS)}
        meta["bands_order"] = list(GEOBENCH_BANDS)
        meta["label"] = label
        meta.update(extra or {})
        return pickle.dumps(meta)


def write_geobench_task(task_dir: Path, n_per_class: dict[str, int], classes: int = 3,
                        side: int = 32, seed: int = 0, attr: bool = True) -> dict[str, int]:
    """Write a task folder; ``n_per_class`` = samples per class in each split. Returns labels."""
    import h5py

    rng = np.random.default_rng(seed)
    task_dir.mkdir(parents=True, exist_ok=True)
    partition, labels, i = {}, {}, 0
    for split, n in n_per_class.items():
        partition[split] = []
        for _ in range(n):
            for c in range(classes):
                name = f"id_{i:04d}"
                i += 1
                level = 600 + 900 * c  # DN: reflectance 0.06, 0.15, 0.24
                with h5py.File(task_dir / f"{name}.hdf5", "w") as f:
                    for band in GEOBENCH_BANDS:
                        f[band] = (level + 60 * rng.standard_normal((side, side))).astype(np.int16)
                    if attr:
                        label = np.int64(c) if c % 2 else c  # both forms occur in pickles
                        f.attrs["pickle"] = str(geobench_metadata(label))
                partition[split].append(name)
                labels[name] = c
    (task_dir / "default_partition.json").write_text(json.dumps(partition))
    return labels


def write_eurosat_s1(root: Path, n_per_class: dict[str, int], side: int = 32, seed: int = 0,
                     units: str = "db") -> Path:
    """Write ``root/eurosat_s1``; VV/VH of class c around -22 + 10c / -28 + 10c dB."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    base = root / "eurosat_s1"
    i = 0
    for split, n in n_per_class.items():
        names = []
        for _ in range(n):
            for c, cls in enumerate(EUROSAT_CLASSES):
                i += 1
                name = f"{cls}_{i}"
                folder = base / "all_imgs" / cls
                folder.mkdir(parents=True, exist_ok=True)
                db = np.stack([-22 + 10 * c + 0.5 * rng.standard_normal((side, side)),
                               -28 + 10 * c + 0.5 * rng.standard_normal((side, side))])
                data = db if units == "db" else 10 ** (db / 10)
                with rasterio.open(folder / f"{name}.tif", "w", driver="GTiff", width=side,
                                   height=side, count=2, dtype="float32", crs="EPSG:32632",
                                   transform=from_origin(500000, 5000000, 10, 10)) as dst:
                    dst.write(data.astype(np.float32))
                names.append(f"{name}.jpg")
        (base / f"eurosat-{split}.txt").write_text("\n".join(names) + "\n")
    return base
