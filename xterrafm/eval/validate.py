"""Check an install against figures the TerraFM paper publishes, on local copies of the benchmarks.

Benchmarks (read in their public formats, :mod:`xterrafm.eval.geobench` and
:mod:`xterrafm.eval.copernicus_bench`):

* ``m-eurosat`` (GEO-Bench ``classification_v1.0/m-eurosat``, Sentinel-2 L1C): frozen CLS
  embeddings of images resized to 224 px after normalisation, cosine kNN with k = 20 and votes
  ``exp(sim / 0.07)``, trained on ``train``, scored on ``test``; published TerraFM-B top-1
  accuracy 94.2 (all training data) and 59.3 (1 %, a seeded stratified subsample).
* ``eurosat-s1`` (Copernicus-Bench EuroSAT-S1, Sentinel-1 VV/VH in dB): the same embeddings;
  published TerraFM-B overall accuracy 87.8 under Copernicus-Bench's protocol, which trains a
  linear classifier on the frozen encoder's features; this module runs a linear probe
  (:func:`xterrafm.eval.linear.fit_linear_probe`) for that figure, and the kNN above beside it
  (no published counterpart).

A score is *consistent* with its published figure when the figure lies in the score's Wilson
95 % interval (on the test split's size) widened by one percentage point on each side, for
protocol details the paper does not state. Otherwise the report lists what to try: the
normalisation, the patch-embedding stem, the resize, the input units and the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xterrafm._imports import import_gate
from xterrafm.errors import UsageError

with import_gate():
    import numpy as np

__all__ = [
    "BENCHMARKS",
    "PUBLISHED_FIGURES",
    "PublishedFigure",
    "ValidationReport",
    "ValidationRow",
    "ValidationSettings",
    "format_report",
    "run_validation",
]


#: Percentage points added on each side of a score's 95 % interval before comparing.
MARGIN = 1.0


@dataclass(frozen=True)
class PublishedFigure:
    """A score the TerraFM paper reports for TerraFM-B (percent)."""

    benchmark: str
    probe: str  # "knn" or "linear"
    train_fraction: float
    value: float
    metric: str
    source: str


_GEOBENCH_KNN = ("TerraFM paper (arXiv:2506.06281), kNN table on GEO-Bench; also in the README "
                 "of github.com/mbzuai-oryx/TerraFM")
_COPERNICUS = ("TerraFM paper (arXiv:2506.06281), Copernicus-Bench table (frozen encoder; "
               "Copernicus-Bench trains a linear classifier on its features)")
PUBLISHED_FIGURES: tuple[PublishedFigure, ...] = (
    PublishedFigure("m-eurosat", "knn", 1.0, 94.2, "top-1 accuracy", _GEOBENCH_KNN),
    PublishedFigure("m-eurosat", "knn", 0.01, 59.3, "top-1 accuracy", _GEOBENCH_KNN),
    PublishedFigure("eurosat-s1", "linear", 1.0, 87.8, "overall accuracy", _COPERNICUS),
)


@dataclass(frozen=True)
class Benchmark:
    """How to read a benchmark and which protocol rows to run by default."""

    name: str
    modality: str
    splits: tuple[str, str, str]  # train, validation, test as the files name them
    probes: tuple[str, ...]
    train_fractions: tuple[float, ...]
    native_size: int


BENCHMARKS: dict[str, Benchmark] = {
    "m-eurosat": Benchmark("m-eurosat", "s2_l1c", ("train", "valid", "test"), ("knn",),
                           (1.0, 0.01), 64),
    "eurosat-s1": Benchmark("eurosat-s1", "s1", ("train", "val", "test"), ("linear", "knn"),
                            (1.0,), 64),
}


@dataclass(frozen=True)
class ValidationSettings:
    """What to run; the defaults are the paper's protocol.

    ``normalization`` is a spec name, a JSON spec file, or ``"train-stats"`` (per-band
    statistics of up to 1000 training images). ``size`` 0 keeps the native image size.
    ``scale``/``offset`` convert GEO-Bench values to reflectance; ``s1_units`` names the
    units of EuroSAT-S1 files. ``max_samples`` caps each split (a quick look, not the protocol).
    """

    benchmark: str
    data_dir: Path
    weights: str
    model: str = "terrafm-b"
    modality: str | None = None
    normalization: str = "terrafm-v1"
    size: int = 224
    k: int = 20
    temperature: float = 0.07
    probes: tuple[str, ...] | None = None
    train_fractions: tuple[float, ...] | None = None
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    scale: float = 1e-4
    offset: float = 0.0
    s1_units: str = "db"
    partition: str = "default"
    max_samples: int | None = None


@dataclass(frozen=True)
class ValidationRow:
    """One protocol's score beside the published figure (fractions in [0, 1])."""

    probe: str
    train_fraction: float
    score: float
    n_train: int
    n_test: int
    published: PublishedFigure | None

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95 % interval of the accuracy."""
        n, p, z = self.n_test, self.score, 1.96
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    @property
    def bounds(self) -> tuple[float, float]:
        """Published figures consistent with this score, percent: the Wilson interval widened
        by :data:`MARGIN` points on each side."""
        lo, hi = self.interval
        return 100 * lo - MARGIN, 100 * hi + MARGIN

    @property
    def verdict(self) -> str:
        if self.published is None:
            return "no published figure"
        lo, hi = self.bounds
        if lo <= self.published.value <= hi:
            return "consistent"
        return "LOWER than published" if hi < self.published.value else "HIGHER than published"


@dataclass
class ValidationReport:
    """Result of :func:`run_validation`."""

    settings: ValidationSettings
    modality: str
    normalization: str
    rows: list[ValidationRow]
    weights_source: str
    weights_sha256: str
    input_medians: list[float]
    hints: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return all(r.verdict in ("consistent", "no published figure") for r in self.rows)


# -- reading -----------------------------------------------------------------------------------
def _split(settings: ValidationSettings, bench: Benchmark, split: str
           ) -> tuple[Callable[[], Iterator[np.ndarray]], np.ndarray]:
    """A re-iterable image source (physical units) and the labels of one split."""
    if bench.name == "m-eurosat":
        from xterrafm.eval.geobench import load_split, read_sample

        names, labels = load_split(settings.data_dir, split, settings.partition)
        files = [Path(settings.data_dir) / f"{n}.hdf5" for n in names]
        modality = settings.modality or bench.modality

        def reader(f: Path) -> np.ndarray:
            return read_sample(f, modality, settings.scale, settings.offset)
    else:
        from xterrafm.eval.copernicus_bench import load_split, read_chip

        files, labels = load_split(settings.data_dir, split)

        def reader(f: Path) -> np.ndarray:
            return read_chip(f, settings.s1_units)
    if settings.max_samples:
        keep = np.random.default_rng(settings.seed).permutation(len(files))[:settings.max_samples]
        keep.sort()
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    y = np.asarray(labels)
    if y.dtype == object:
        raise UsageError(f"{bench.name}: labels of split {split!r} are not all of one shape")
    return (lambda: (reader(f) for f in files)), y


def _train_stats_spec(images: Callable[[], Iterator[np.ndarray]], modality: str
                      ) -> dict[str, Any]:
    """Per-band statistics of the first 1000 training images (their split order)."""
    from xterrafm.normalization import compute_stats

    sample = []
    for i, img in enumerate(images()):
        if i >= 1000:
            break
        sample.append(img)
    return compute_stats(np.stack(sample), modality, name="train-stats")


def _medians(images: Callable[[], Iterator[np.ndarray]], n: int = 64) -> list[float]:
    stack = []
    for i, img in enumerate(images()):
        if i >= n:
            break
        stack.append(img)
    return [float(v) for v in np.nanmedian(np.stack(stack), axis=(0, 2, 3))]


# -- running -----------------------------------------------------------------------------------
def _published(benchmark: str, probe: str, fraction: float) -> PublishedFigure | None:
    return next((f for f in PUBLISHED_FIGURES if f.benchmark == benchmark and f.probe == probe
                 and f.train_fraction == fraction), None)


def _check(settings: ValidationSettings) -> Benchmark:
    bench = BENCHMARKS.get(settings.benchmark)
    if bench is None:
        raise UsageError(f"unknown benchmark {settings.benchmark!r}; expected one of "
                         f"{sorted(BENCHMARKS)}")
    if not Path(settings.data_dir).is_dir():
        raise UsageError(f"benchmark folder {settings.data_dir} does not exist")
    for probe in settings.probes or ():
        if probe not in ("knn", "linear"):
            raise UsageError(f"unknown probe {probe!r}; expected 'knn' or 'linear'")
    for f in settings.train_fractions or ():
        if not 0 < f <= 1:
            raise UsageError(f"train fractions must be in (0, 1]; got {f}")
    if settings.size and settings.size % 16:
        raise UsageError(f"size must be a multiple of 16 (or 0: native); got {settings.size}")
    return bench


def run_validation(settings: ValidationSettings, model: Any = None) -> ValidationReport:
    """Embed a benchmark with the given weights, score it, and compare with the paper.

    Parameters
    ----------
    settings : ValidationSettings
    model : xterrafm.TerraFM, optional
        An already loaded encoder (default: ``load_model(settings.model, settings.weights)``).

    Returns
    -------
    ValidationReport
        Rows per probe and training fraction, with hints when a row is not consistent.
    """
    from xterrafm.eval.chips import embed_images
    from xterrafm.eval.knn_probe import knn
    from xterrafm.eval.linear import fit_linear_probe
    from xterrafm.eval.metrics import accuracy
    from xterrafm.eval.splits import subsample_training_set

    bench = _check(settings)
    modality = settings.modality or bench.modality
    train_images, ytr = _split(settings, bench, bench.splits[0])
    test_images, yte = _split(settings, bench, bench.splits[2])
    if model is None:
        from xterrafm.weights import load_model

        model = load_model(settings.model, settings.weights, device=settings.device)
    spec: Any = settings.normalization
    if spec == "train-stats":
        spec = _train_stats_spec(train_images, modality)
    size = settings.size or None

    def embed(images: Callable[[], Iterator[np.ndarray]]) -> np.ndarray:
        return embed_images(images(), model, modality, spec=spec, batch_size=settings.batch_size,
                            size=size)

    xtr, xte = embed(train_images), embed(test_images)
    rows = []
    for probe in settings.probes or bench.probes:
        for fraction in settings.train_fractions or bench.train_fractions:
            keep = (np.arange(len(ytr)) if fraction == 1.0
                    else subsample_training_set(ytr, fraction, seed=settings.seed))
            if probe == "knn":
                pred = knn(xtr[keep], ytr[keep], xte, k=settings.k,
                           temperature=settings.temperature)
                score = accuracy(yte, pred)
            else:
                fitted = fit_linear_probe(xtr[keep], ytr[keep], seed=settings.seed)
                score = fitted.score(xte, yte)
            rows.append(ValidationRow(probe, fraction, float(score), len(keep), len(yte),
                                      _published(bench.name, probe, fraction)))
    report = ValidationReport(
        settings=settings, modality=modality,
        normalization=settings.normalization if isinstance(spec, str) else
        f"train-stats (computed on {bench.splits[0]})",
        rows=rows, weights_source=str(getattr(model, "weights_source", settings.weights)),
        weights_sha256=str(getattr(model, "weights_sha256", "")),
        input_medians=_medians(train_images))
    report.hints = _hints(report, bench)
    return report


# -- advice ------------------------------------------------------------------------------------
def _hints(report: ValidationReport, bench: Benchmark) -> list[str]:
    """Implausible input units (always), then, when a row disagrees with the paper, what to
    try, most likely first."""
    s, hints = report.settings, []
    med = np.asarray(report.input_medians)
    if report.modality.startswith("s2") and not (0.005 < np.nanmedian(med) < 1.5):
        hints.append(f"input units: the median reflectance of the training images is "
                     f"{np.nanmedian(med):.4g}, not 0.01-1; GEO-Bench stores digital numbers "
                     f"(--scale 1e-4 --offset 0); a copy already in reflectance needs --scale 1")
    if report.modality == "s1" and not (1e-4 < np.nanmedian(med) < 1.0):
        hints.append(f"input units: the median linear power of the training images is "
                     f"{np.nanmedian(med):.4g} (expected 1e-4-1, i.e. -40 to 0 dB); the "
                     f"published files hold dB (--s1-units db); linear copies need "
                     f"--s1-units linear")
    if report.consistent:
        return hints
    other_norm = "train-stats" if s.normalization != "train-stats" else "terrafm-v1"
    hints.append(f"normalisation: the TerraFM authors published no input normalisation; this "
                 f"run used {report.normalization!r}. Try --normalization {other_norm}, or a "
                 f"spec file of your own (xterrafm.normalization.save_spec)")
    if report.modality.startswith("s2"):
        other = "s2_l2a" if report.modality == "s2_l1c" else "s2_l1c"
        hints.append(f"stem: the published code sends every 12-band input through the L1C "
                     f"patch embedding ({bench.name} is L1C: --modality s2_l1c); this run used "
                     f"the {report.modality} stem, try --modality {other}")
    else:
        hints.append("stem: Sentinel-1 has one patch embedding; check the band order is VV, "
                     "VH (EuroSAT-S1 files hold VV then VH)")
    if s.size and s.size != 224:
        hints.append(f"resize: images were resized bilinearly to {s.size} px after "
                     "normalisation; the paper resizes to 224 px (--size 224)")
    elif s.size:
        hints.append(f"resize: images were resized bilinearly to 224 px after normalisation, "
                     f"as in the paper; try --size {bench.native_size} (native) or "
                     "--size 0 to see how much the resize matters")
    else:
        hints.append("resize: images were embedded at their native size; the paper resizes "
                     "to 224 px (--size 224)")
    hints.append(f"weights: SHA-256 of the loaded tensors {report.weights_sha256[:16]}... "
                 f"({report.weights_source}); random or other weights score far lower; see "
                 "docs/weights.md for the published file and its pin")
    if any(r.probe == "linear" and r.published is not None for r in report.rows):
        hints.append("protocol: Copernicus-Bench's reference code trains its linear "
                     "classifier on the encoder's features of randomly flipped images; this "
                     "probe trains on fixed embeddings (xterrafm.eval.linear defaults), which "
                     "can differ by a point or two")
    return hints


def format_report(report: ValidationReport) -> str:
    """The report as text: settings, one line per row beside the published figure, hints."""
    s = report.settings
    lines = [
        f"validate {s.benchmark}: {s.data_dir}",
        f"  model {s.model}, weights {report.weights_source}",
        f"  weights sha256 (tensors) {report.weights_sha256}",
        f"  modality {report.modality}, normalisation {report.normalization}, "
        f"resize {s.size or 'none (native)'} px, kNN k={s.k} T={s.temperature:g}",
        "",
        f"  {'protocol':<22} {'train':>7} {'test':>6}  {'this run':>17}  {'published':>9}  "
        "verdict",
    ]
    for r in report.rows:
        lo, hi = r.interval
        proto = f"{r.probe}" + (f" ({r.train_fraction:.0%} train)" if r.train_fraction < 1
                                else "")
        pub = f"{r.published.value:.1f}" if r.published else "-"
        lines.append(f"  {proto:<22} {r.n_train:>7} {r.n_test:>6}  {100 * r.score:5.1f} "
                     f"[{100 * lo:4.1f}, {100 * hi:4.1f}]  {pub:>9}  {r.verdict}")
    for r in report.rows:
        if r.published is not None:
            lines.append(f"  published {r.probe} {r.train_fraction:.0%}: {r.published.metric}, "
                         f"{r.published.source}")
    if s.max_samples:
        lines.append(f"  note: at most {s.max_samples} samples per split (--max-samples): not "
                     "the paper's protocol")
    if not report.consistent:
        lines += ["", "does not match the paper; what to try:"]
    elif not any(r.published is not None for r in report.rows):
        lines += ["", "no published figure for the protocols run (see --probe, "
                      "--train-fraction)"]
    else:
        lines += ["", "consistent with the published figures"]
    if report.hints and report.consistent:
        lines += ["check:"]
    lines += [f"  - {h}" for h in report.hints]
    return "\n".join(lines)
