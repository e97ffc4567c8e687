"""Window probes of the pretraining evidence: labelled windows, no-model baselines, kNN and linear.

A scene (a training cube with ``landcover``) is cut into non-overlapping square windows; each
window keeps its majority class when that class covers at least ``min_purity`` of it, and the
region that holds most of that class (the cubes of :mod:`xterrafm.datasets.structured` carry a
``region`` map), so that confidence intervals can resample whole regions.

Features of a window come from an encoder (CLS token; fused over several modalities) or from
a *no-model baseline*: per-band statistics of the window's normalised pixels (mean, median,
quantiles, mean and standard deviation), all modalities concatenated. Every feature set is
scored the same way: standardised with the probe-training statistics, then a cosine kNN
(:func:`xterrafm.eval.knn_probe.knn`) and a linear probe (:func:`xterrafm.eval.linear.fit_linear_probe`),
by accuracy and macro-accuracy (mean per-class recall). For macro-accuracy the probes can be
fitted class-balanced (``class_weight="balanced"``), so that a rare class is not lost to its
prior when the features do separate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xterrafm._imports import import_gate
from xterrafm.data.cube import TrainingCube
from xterrafm.errors import UsageError
from xterrafm.eval.metrics import accuracy, macro_accuracy, per_class_recall

with import_gate():
    import numpy as np
    import torch
    import xarray as xr

__all__ = ["BASELINES", "WindowSet", "baseline_features", "bootstrap_interval",
           "encoder_features", "probe_predictions", "scene_windows", "score_predictions"]

#: No-model baselines: name -> quantiles of the window's pixels per band ("mean", "std" too).
BASELINES: dict[str, tuple] = {
    "mean": ("mean",),
    "median": (0.5,),
    "quantiles": (0.1, 0.25, 0.5, 0.75, 0.9),
    "mean_std": ("mean", "std"),
}


@dataclass(frozen=True)
class WindowSet:
    """Labelled windows of one scene.

    Attributes
    ----------
    inputs : dict of str -> Tensor (N, C, w, w)
        Encoder input per modality (:func:`xterrafm.model_input.normalize_and_fill`).
    labels : ndarray (N,)
        Majority class code.
    groups : ndarray (N,)
        Region of the majority class (window index when the cube has no ``region`` map).
    """

    inputs: dict[str, torch.Tensor]
    labels: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def scene_windows(
    cube: TrainingCube | xr.Dataset | str, modalities: Sequence[str], window: int = 32,
    min_purity: float = 0.75, time_index: int = 0, normalization: str = "terrafm-v1",
) -> WindowSet:
    """Cut a cube into non-overlapping labelled windows (see the module docstring).

    Parameters
    ----------
    cube : TrainingCube, xr.Dataset or path
    modalities : sequence of str
        Modalities to read (date ``time_index``).
    window : int
        Window side in pixels (a multiple of 16).
    min_purity : float
        Keep windows whose majority class covers at least this share of labelled pixels.
    """
    from xterrafm.model_input import normalize_and_fill

    if not isinstance(cube, TrainingCube):
        cube = TrainingCube(cube, modalities=list(modalities))
    ny, nx = cube.height // window, cube.width // window
    if ny == 0 or nx == 0:
        raise UsageError(f"the cube ({cube.height} x {cube.width} px) holds no {window} px window")
    region = (0, ny * window, 0, nx * window)
    lc = cube.read_landcover(region)
    ds = cube.dataset
    reg = (np.asarray(ds["region"].values[:ny * window, :nx * window])
           if "region" in ds.data_vars else None)
    blocks = lc.reshape(ny, window, nx, window).transpose(0, 2, 1, 3).reshape(ny * nx, -1)
    keep, labels, groups = [], [], []
    for i, px in enumerate(blocks):
        lab = px[px > 0]
        if lab.size == 0:
            continue
        values, counts = np.unique(lab, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] < min_purity * lab.size:
            continue
        keep.append(i)
        labels.append(int(values[top]))
        if reg is None:
            groups.append(i)
        else:
            r = reg[(i // nx) * window:(i // nx + 1) * window, (i % nx) * window:(i % nx + 1) * window]
            g, c = np.unique(r.ravel()[px == values[top]], return_counts=True)
            groups.append(int(g[np.argmax(c)]))
    if not keep:
        raise UsageError(f"no {window} px window reaches a purity of {min_purity}")
    idx = np.asarray(keep)
    inputs = {}
    for m in modalities:
        raw = cube.read_modality(m, region, times=[time_index])[0]
        x = normalize_and_fill(raw, m, normalization)[0]
        c = x.shape[0]
        x = x.reshape(c, ny, window, nx, window).transpose(1, 3, 0, 2, 4).reshape(-1, c, window, window)
        inputs[m] = torch.from_numpy(np.ascontiguousarray(x[idx]))
    return WindowSet(inputs=inputs, labels=np.asarray(labels), groups=np.asarray(groups))


def baseline_features(windows: WindowSet, kind: str) -> np.ndarray:
    """No-model features of every window: per-band statistics, modalities concatenated.

    Parameters
    ----------
    windows : WindowSet
    kind : str
        A key of :data:`BASELINES`.

    Returns
    -------
    ndarray (N, F) float32
    """
    if kind not in BASELINES:
        raise UsageError(f"unknown baseline {kind!r}; expected one of {sorted(BASELINES)}")
    out = []
    for x in windows.inputs.values():
        flat = x.flatten(2).double()  # (N, C, P)
        for stat in BASELINES[kind]:
            if stat == "mean":
                out.append(flat.mean(-1))
            elif stat == "std":
                out.append(flat.std(-1))
            else:
                out.append(torch.quantile(flat, float(stat), dim=-1))
    return torch.cat(out, dim=1).float().numpy()


@torch.no_grad()
def encoder_features(model: torch.nn.Module, windows: WindowSet, batch_size: int = 256
                     ) -> np.ndarray:
    """CLS embeddings (N, D) of the windows: ``forward_fused`` over all modalities of the set."""
    model.eval()
    mods = list(windows.inputs)
    n = len(windows)
    out = []
    for i in range(0, n, batch_size):
        batch = {m: windows.inputs[m][i:i + batch_size] for m in mods}
        if len(mods) == 1:
            out.append(model(batch[mods[0]], modality=mods[0]))
        else:
            out.append(model.forward_fused(batch))
    return torch.cat(out).float().numpy()


def probe_predictions(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *,
                      k: int = 20, seed: int = 0, class_weight: str | None = None
                      ) -> dict[str, np.ndarray]:
    """Test-set predictions of a cosine kNN and a linear probe on standardised features.

    Parameters
    ----------
    train_x, test_x : ndarray (N, F), (M, F)
    train_y : ndarray (N,)
    k : int
        kNN neighbours.
    seed : int
        Seed of the linear probe's shuffling.
    class_weight : {None, "balanced"}
        ``"balanced"`` fits both probes as if every class were equally frequent
        (:mod:`xterrafm.eval.class_balance`); ``None`` fits them to the labels as they come.

    Returns
    -------
    dict
        ``{"knn": (M,), "linear": (M,)}`` predicted labels.
    """
    from xterrafm.eval.knn_probe import knn
    from xterrafm.eval.linear import fit_linear_probe

    train_x = np.asarray(train_x, np.float64)
    test_x = np.asarray(test_x, np.float64)
    mean, std = train_x.mean(0), train_x.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    ztr = ((train_x - mean) / std).astype(np.float32)
    zte = ((test_x - mean) / std).astype(np.float32)
    probe = fit_linear_probe(ztr, train_y, standardize=False, optimizer="lbfgs", epochs=200,
                             weight_decay=1e-3, class_weight=class_weight, seed=seed)
    return {"knn": knn(ztr, train_y, zte, k=k, class_weight=class_weight),
            "linear": probe.predict(zte)}


def score_predictions(labels: np.ndarray, predicted: np.ndarray) -> dict[str, object]:
    """Accuracy, macro-accuracy and per-class recall of predictions."""
    return {"accuracy": accuracy(labels, predicted),
            "macro_accuracy": macro_accuracy(labels, predicted),
            "recall": {str(k): v for k, v in per_class_recall(labels, predicted).items()}}


def bootstrap_interval(labels: np.ndarray, groups: np.ndarray, predicted: dict[str, np.ndarray],
                       metric: str = "macro_accuracy", reference: str | None = None,
                       n_boot: int = 1000, level: float = 0.95, seed: int = 0
                       ) -> dict[str, list[float]]:
    """Percentile intervals of a metric, resampling whole groups (regions) with replacement.

    Parameters
    ----------
    labels, groups : ndarray (M,)
        Test labels and the group of every test window.
    predicted : dict of str -> ndarray (M,)
        Predictions of several feature sets on the same windows.
    metric : {"accuracy", "macro_accuracy"}
    reference : str, optional
        Also give intervals of ``metric(name) - metric(reference)`` for every other name, from
        the same resamples (paired).
    n_boot, level, seed
        Resamples, coverage and seed.

    Returns
    -------
    dict
        ``{name: [lo, hi]}`` and, with ``reference``, ``{"<name>-<reference>": [lo, hi]}``.
    """
    fn = {"accuracy": accuracy, "macro_accuracy": macro_accuracy}[metric]
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(uniq.size)]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in predicted}
    if reference is not None:
        draws.update({f"{n}-{reference}": [] for n in predicted if n != reference})
    for _ in range(n_boot):
        pick = rng.integers(0, uniq.size, uniq.size)
        idx = np.concatenate([members[g] for g in pick])
        vals = {n: fn(labels[idx], p[idx]) for n, p in predicted.items()}
        for n, v in vals.items():
            draws[n].append(v)
            if reference is not None and n != reference:
                draws[f"{n}-{reference}"].append(v - vals[reference])
    a = (1.0 - level) / 2.0
    return {n: [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))] for n, v in draws.items()}
