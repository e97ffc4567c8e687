"""``python -m xterrafm.pretrain.evidence --json OUT``: does pretraining learn spatial structure?

The protocol (docs/pretraining.md, "Evidence"):

1. Task: structured synthetic land cover (:mod:`xterrafm.datasets.structured`): 11 long-tailed
   classes told apart by the arrangement of two materials and, for two of them, by Sentinel-1
   context; a window's spectrum statistics carry little of the class.
2. Recipe: the shipped ``tiny`` config, fixed beforehand on *selection* scenes
   (:data:`SELECTION_SCENES`) that are never scored; only the run length and data plumbing are
   overridden here (:data:`RUN_OVERRIDES`).
3. For each seed (model initialisation, data order, augmentations *and* scenes): pretrain on
   a training scene, then embed the 32 px windows of two untouched held-out scenes (one fits
   the probes, the other is scored): the pretrained teacher, the same encoder at its random
   initialisation, and the no-model baselines (:data:`xterrafm.pretrain.probes.BASELINES`).
4. Score cosine kNN and linear probes by accuracy and macro-accuracy; intervals resample whole
   regions of the scored scene; across seeds, a t interval of the mean margin. Accuracy is
   scored with probes fitted to the labels as they come, macro-accuracy with probes fitted
   class-balanced (:data:`PROBE_CLASS_WEIGHT`): fitted to the long-tailed labels, both probes
   give the rarest classes recall 0 from every feature set, so their macro-accuracy measures
   the class prior more than the features. The prior-fitted probes' macro-accuracy is kept in
   each record as ``macro_accuracy_prior_fit``.

The margin of a seed is ``pretrained - max(random_init, best no-model baseline)`` for each
probe and metric, the best baseline being picked on the scored scene itself (which favours the
baselines).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from xterrafm._imports import import_gate
from xterrafm.pretrain.diagnostics import embedding_effective_rank
from xterrafm.pretrain.probes import (
    BASELINES,
    baseline_features,
    bootstrap_interval,
    encoder_features,
    probe_predictions,
    scene_windows,
    score_predictions,
)

with import_gate():
    import numpy as np
    import torch

__all__ = ["MODALITIES", "PROBES", "PROBE_CLASS_WEIGHT", "RUN_OVERRIDES", "SCENES",
           "SELECTION_SCENES", "main", "run_evidence", "run_seed", "summarize"]

#: Scene seeds of pretraining seed ``s``: ``base + s`` (scored protocol).
SCENES: dict[str, int] = {"train": 100, "fit": 200, "test": 300}
#: Scenes on which the recipe was chosen (never scored by this protocol).
SELECTION_SCENES: dict[str, int] = {"train": 900, "fit": 950, "test": 951}
#: Modalities of the training scene and of the probed windows (fused encoder input).
MODALITIES: tuple[str, ...] = ("s1", "s2_l2a")
PROBES: tuple[str, ...] = ("knn", "linear")
METRICS: tuple[str, ...] = ("accuracy", "macro_accuracy")
#: Reported beside :data:`METRICS`, not part of ``"done"``: macro-accuracy of the probes of accuracy.
EXTRA_METRICS: tuple[str, ...] = ("macro_accuracy_prior_fit",)
#: Class weighting of the probes whose predictions each metric scores.
PROBE_CLASS_WEIGHT: dict[str, str | None] = {"accuracy": None, "macro_accuracy": "balanced"}
#: Run plumbing on top of the ``tiny`` recipe (one process, no checkpoints, no bar).
RUN_OVERRIDES: dict[str, object] = {"num_workers": 0, "progress": False,
                                    "checkpoint_every": 10**9}


def _scene_cube(seed: int, size: int):
    from xterrafm.datasets.structured import make_structured_scene

    scene = make_structured_scene(seed=seed, size=size)
    return scene.cube.assign(region=(("y", "x"), scene.regions))


def _score(train_f, fit_y, test_f, test_y) -> tuple[dict, dict]:
    """Scores ``{probe: {metric: value, ...}}`` and predictions ``{probe: {metric: (M,)}}``.

    Each metric is scored on the predictions of probes fitted with its
    :data:`PROBE_CLASS_WEIGHT`; ``recall`` (per class) comes from the same probes as
    macro-accuracy, and ``macro_accuracy_prior_fit`` from the probes of accuracy.
    """
    fits = {w: probe_predictions(train_f, fit_y, test_f, class_weight=w)
            for w in set(PROBE_CLASS_WEIGHT.values())}
    scores: dict = {}
    preds: dict = {}
    for p in PROBES:
        preds[p] = {m: fits[w][p] for m, w in PROBE_CLASS_WEIGHT.items()}
        by_metric = {m: score_predictions(test_y, preds[p][m]) for m in METRICS}
        scores[p] = {m: by_metric[m][m] for m in METRICS}
        scores[p]["recall"] = by_metric["macro_accuracy"]["recall"]
        scores[p]["macro_accuracy_prior_fit"] = by_metric["accuracy"]["macro_accuracy"]
    return scores, preds


def run_seed(seed: int, workdir: str | os.PathLike, *, steps: int | None = None,
             train_size: int = 1024, probe_size: int = 1536,
             scenes: dict[str, int] = SCENES, overrides: dict | None = None,
             n_boot: int = 1000) -> dict:
    """Pretrain one seed and score it against random init and the no-model baselines.

    Parameters
    ----------
    seed : int
        Seeds the run (``config.seed``) and picks the scenes ``scenes[...] + seed``.
    workdir : path-like
        Gets the run folder ``seed<seed>/``.
    steps : int, optional
        Pretraining steps (``total_steps`` and ``max_steps``); default the recipe's.
    train_size, probe_size : int
        Sides (px) of the training scene and of the two held-out scenes.
    scenes : dict
        Scene seed bases (``train``, ``fit``, ``test``).
    overrides : dict, optional
        Further config overrides (ablations).
    n_boot : int
        Region-bootstrap resamples of each interval.

    Returns
    -------
    dict
        Per-seed record (see :func:`run_evidence`).
    """
    from xterrafm.pretrain.config import load_config
    from xterrafm.pretrain.trainer import train
    from xterrafm.weights import load_model

    over = {**RUN_OVERRIDES, **(overrides or {}), "seed": seed}
    if steps is not None:
        over.update(total_steps=steps, max_steps=steps)
    config = load_config("tiny", over)
    out = Path(workdir) / f"seed{seed}"
    if (out / "checkpoint.pt").exists():
        (out / "checkpoint.pt").unlink()
    t0 = time.perf_counter()
    train_cube = _scene_cube(scenes["train"] + seed, train_size)
    result = train(config, [train_cube], out)
    train_s = time.perf_counter() - t0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    records = records[-len(result.losses):]
    tail = records[-max(1, len(records) // 10):]

    t1 = time.perf_counter()
    fit = scene_windows(_scene_cube(scenes["fit"] + seed, probe_size), MODALITIES)
    test = scene_windows(_scene_cube(scenes["test"] + seed, probe_size), MODALITIES)
    scores: dict[str, dict] = {}
    preds: dict[str, dict] = {}
    encoders = {"pretrained": load_model(config.model, weights=result.export_path),
                "random_init": load_model(config.model, seed=seed)}
    ranks = {}
    for name, model in encoders.items():
        f_fit, f_test = encoder_features(model, fit), encoder_features(model, test)
        ranks[name] = embedding_effective_rank(torch.from_numpy(f_test))
        scores[name], preds[name] = _score(f_fit, fit.labels, f_test, test.labels)
    for kind in BASELINES:
        scores[kind], preds[kind] = _score(baseline_features(fit, kind), fit.labels,
                                           baseline_features(test, kind), test.labels)
    best = {p: {m: max(BASELINES, key=lambda k, p=p, m=m: scores[k][p][m]) for m in METRICS}
            for p in PROBES}
    record: dict = {
        "seed": seed,
        "scenes": {k: v + seed for k, v in scenes.items()},
        "steps": result.step,
        "train_seconds": round(train_s, 1),
        "eval_seconds": 0.0,
        "n_windows": {"fit": len(fit), "test": len(test)},
        "loss_first_last": [float(np.mean(result.losses[:max(1, len(result.losses) // 10)])),
                            float(np.mean([r["loss"] for r in tail]))],
        "teacher_entropy": float(np.mean([r["teacher_entropy"] for r in tail])),
        "teacher_marginal_entropy": float(np.mean([r["teacher_marginal_entropy"] for r in tail])),
        "pretrained": {**scores["pretrained"], "effective_rank": ranks["pretrained"]},
        "random_init": {**scores["random_init"], "effective_rank": ranks["random_init"]},
        "baselines": {k: scores[k] for k in BASELINES},
        "no_model_baseline": {p: {m: {"baseline": best[p][m], "value": scores[best[p][m]][p][m]}
                                  for m in METRICS} for p in PROBES},
    }
    margins, intervals = {}, {}
    for p in PROBES:
        margins[p], intervals[p] = {}, {}
        for m in (*METRICS, *EXTRA_METRICS):
            # the better of random init and the best baseline (random init on a tie)
            rival = max(("random_init", *BASELINES), key=lambda k, p=p, m=m: scores[k][p][m])
            margins[p][m] = {"vs": rival, "value": scores["pretrained"][p][m] - scores[rival][p][m]}
            if m not in METRICS:
                continue
            ci = bootstrap_interval(test.labels, test.groups,
                                    {"pretrained": preds["pretrained"][p][m],
                                     rival: preds[rival][p][m]},
                                    metric=m, reference=rival, n_boot=n_boot, seed=seed)
            intervals[p][m] = {"pretrained": ci["pretrained"], rival: ci[rival],
                               "margin": ci[f"pretrained-{rival}"]}
    record["margin"] = margins
    record["ci95_regions"] = intervals
    record["eval_seconds"] = round(time.perf_counter() - t1, 1)
    return record


def summarize(records: Sequence[dict]) -> dict:
    """Mean margin per probe and metric over seeds, with a t interval and the per-seed signs."""
    from statistics import NormalDist

    out: dict = {}
    n = len(records)
    # two-sided 95 % Student t quantiles for n - 1 degrees of freedom (normal beyond 30)
    t975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
            9: 2.262}.get(n - 1, NormalDist().inv_cdf(0.975))
    for p in PROBES:
        out[p] = {}
        for m in (*METRICS, *EXTRA_METRICS):
            v = np.array([r["margin"][p][m]["value"] for r in records])
            half = float(t975 * v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            out[p][m] = {"mean_margin": float(v.mean()), "ci95": [float(v.mean() - half),
                                                                 float(v.mean() + half)],
                         "min_margin": float(v.min()), "all_seeds_above": bool((v > 0).all())}
    return out


def _machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["load_average_start"] = list(os.getloadavg())
    except OSError:  # pragma: no cover - not Linux
        pass
    return info


def run_evidence(seeds: Sequence[int] = (0, 1, 2), workdir: str | os.PathLike = "evidence-runs",
                 **kwargs) -> dict:
    """Run the protocol for several seeds; returns the JSON document (see the module docstring).

    ``kwargs`` go to :func:`run_seed` (``steps``, ``train_size``, ``probe_size``, ...).
    """
    from xterrafm.pretrain.config import load_config

    t0 = time.perf_counter()
    machine = _machine()
    records = [run_seed(s, workdir, **kwargs) for s in seeds]
    try:
        machine["load_average_end"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    recipe = load_config("tiny", {**RUN_OVERRIDES, **(kwargs.get("overrides") or {})}).to_dict()
    if kwargs.get("steps"):
        recipe.update(total_steps=kwargs["steps"], max_steps=kwargs["steps"])
    summary = summarize(records)
    return {
        "protocol": {"recipe": recipe, "modalities": list(MODALITIES), "window_px": 32,
                     "min_purity": 0.75, "probes": list(PROBES), "metrics": list(METRICS),
                     "probe_class_weight": dict(PROBE_CLASS_WEIGHT),
                     "scenes": SCENES, "selection_scenes": SELECTION_SCENES,
                     "baselines": list(BASELINES),
                     "bootstrap_resamples": kwargs.get("n_boot", 1000)},
        "machine": machine,
        "seeds": records,
        "summary": summary,
        "done": all(summary[p][m]["all_seeds_above"] and summary[p][m]["mean_margin"] >= 0.03
                    for p in PROBES for m in METRICS),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the protocol and write the JSON document."""
    parser = argparse.ArgumentParser(prog="python -m xterrafm.pretrain.evidence",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="output JSON file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default=None, help="run folders (default: beside --json)")
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps per seed")
    parser.add_argument("--train-size", type=int, default=1024,
                        help="side (px) of each seed's training scene")
    parser.add_argument("--probe-size", type=int, default=1536,
                        help="side (px) of each held-out scene (probe fit and scored)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="region-bootstrap resamples of each interval")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    for name in ("steps", "train_size", "probe_size", "bootstrap", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.json)
    workdir = Path(args.workdir) if args.workdir else out.with_suffix("").with_name(
        out.stem + "-runs")
    doc = run_evidence(args.seeds, workdir, steps=args.steps, train_size=args.train_size,
                       probe_size=args.probe_size, n_boot=args.bootstrap)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    for p in PROBES:
        for m in (*METRICS, *EXTRA_METRICS):
            s = doc["summary"][p][m]
            print(f"{p:6s} {m:24s} mean margin {s['mean_margin']:+.3f} "
                  f"(95% CI {s['ci95'][0]:+.3f} .. {s['ci95'][1]:+.3f}), min {s['min_margin']:+.3f}")
    print(f"done: {doc['done']}; {doc['wall_seconds']:.0f} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
