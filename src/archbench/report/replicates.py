"""Seed replicates as the report sees them: runs grouped by (dataset, model), their metrics averaged."""

from __future__ import annotations

import math
import statistics

from archbench.data.prepare import SOURCE_KEYS
from archbench.tasks.base import RunResult

# config keys that do not make runs different experiments: the seed (what replicates vary), where
# a run ran and wrote (as archbench.resume ignores them), and where its raw data lay
NOT_AN_EXPERIMENT = ("seed", "run_name", "recipe_applied", "data.root", "data.download")
# keys whose values are the folds of one experiment (cross-validation, leave-one-speaker-out): runs
# differing only there are its replicates, one per fold
FOLD_KEYS = ("data.val_fold", "data.test_speaker")


# where a dataset's own files are read from: one name (``csv``) over other files is other data
LOCATION_KEYS = tuple(f"data.{key}" for key in SOURCE_KEYS)


def _config(run: RunResult) -> dict[str, str]:
    """The run's ``config.yaml``, flattened (``{}`` without one)."""
    import yaml

    from archbench.config import dotted_leaves

    path = run.folder / "config.yaml"
    return {k: str(v) for k, v in dotted_leaves(yaml.safe_load(path.read_text())).items()} if path.is_file() else {}


def label_datasets(runs: list[RunResult]) -> None:
    """Runs of one dataset name trained on other files' data (two CSV tables are both ``csv``)
    become separate datasets named by the file, ``csv (wine.csv)``: one table never ranks, tests
    or references models of another. One file read from one place stays one dataset, whatever
    folds or seeds its runs took."""
    from pathlib import Path

    by_name: dict[str, list[tuple[RunResult, str | None]]] = {}
    for run in runs:
        config = _config(run)
        where = next((config[k] for k in LOCATION_KEYS if config.get(k) not in (None, "None")), None)
        by_name.setdefault(run.run["data"], []).append((run, where))
    for name, group in by_name.items():
        places = {where for _, where in group}
        if len(places) < 2 or len({run.run.get("data_checksum") for run, _ in group}) < 2:
            continue
        short = {where: Path(where).name if where else "–" for where in places}
        if len(set(short.values())) < len(places):  # the same file name in two folders
            short = {where: where or "–" for where in places}
        for run, where in group:
            run.run["data"] = f"{name} ({short[where]})"


def experiment_of(run: RunResult) -> tuple[dict[str, str], tuple]:
    """A run's experiment: its config (``config.yaml``, flattened) less what its replicates may
    differ in; and which replicate it is (seed, fold, data checksum)."""
    from archbench.resume import NOT_FINGERPRINTED

    config = _config(run)
    ignored = (*NOT_FINGERPRINTED, *NOT_AN_EXPERIMENT, *FOLD_KEYS)
    kept = {k: v for k, v in config.items() if not any(k == i or k.startswith(f"{i}.") for i in ignored)}
    seed = run.run.get("seed", config.get("seed"))
    replicate = (str(seed), *(config.get(k) for k in FOLD_KEYS), run.run.get("data_checksum"))
    return kept, replicate


def label_experiments(runs: list[RunResult]) -> tuple[list[RunResult], list[RunResult]]:
    """Runs of one (dataset, model) that are different experiments (other settings than the seed)
    get their model label extended by what differs, e.g. ``mlp (trainer.max_epochs=1)``, so they
    are never averaged as seed replicates; a run repeating another's experiment and seed is left
    out (the newest is kept), and so is one trained on an earlier version of the same files (the
    fold's newest run says which data is current: your table edited since). Returns ``(kept, left out)``."""
    label_datasets(runs)
    pairs: dict[tuple[str, str], list[tuple[RunResult, dict[str, str], tuple]]] = {}
    for run in runs:
        pairs.setdefault((run.run["data"], run.run["model"]), []).append((run, *experiment_of(run)))
    kept, repeated = [], []
    for group in pairs.values():
        seen: set[tuple] = set()
        current: dict[tuple, object] = {}  # (experiment, folds) → the data checksum of its newest run
        for run, experiment, replicate in sorted(group, key=lambda g: -(g[0].folder / "metrics.json").stat().st_mtime):
            key = (tuple(sorted(experiment.items())), replicate)
            folds, checksum = replicate[1:-1], replicate[-1]  # replicate: (seed, *folds, checksum)
            stale = current.setdefault((key[0], folds), checksum) != checksum
            (repeated if key in seen or stale else kept).append(run)
            seen.add(key)
        _label_apart([(run, experiment) for run, experiment, _ in group])
    return sorted(kept, key=lambda r: str(r.folder)), repeated


def _label_apart(group: list[tuple[RunResult, dict[str, str]]]) -> None:
    """Each experiment of a pair labelled by where it departs from the settings most of the pair's
    experiments share (that one keeps the plain model name); labels are unique."""
    from collections import Counter

    experiments = {tuple(sorted(e.items())): e for _, e in group}
    if len(experiments) < 2:
        return
    keys = sorted(set().union(*experiments.values()))
    common = {k: Counter(e.get(k, "–") for e in experiments.values()).most_common(1)[0][0] for k in keys}
    labels: dict[tuple, str] = {}
    for identity, experiment in experiments.items():
        departs = [f"{k}={experiment.get(k, '–')}" for k in keys if experiment.get(k, "–") != common[k]]
        label = ", ".join(departs[:3]) + (f", +{len(departs) - 3} more" if len(departs) > 3 else "")
        while label in labels.values():  # the same first departures: told apart by number
            label += f" #{len(labels) + 1}"
        labels[identity] = label
    for run, experiment in group:
        label = labels[tuple(sorted(experiment.items()))]
        run.run["model"] = f"{run.run['model']} ({label})" if label else run.run["model"]


def by_pair(runs: list[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    """Runs grouped by (dataset, model), each group ordered by seed."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.run["data"], run.run["model"]), []).append(run)
    return {pair: sorted(group, key=lambda r: int(r.run.get("seed", 0))) for pair, group in sorted(groups.items())}


def aggregate(group: list[RunResult]) -> RunResult:
    """One row for a pair: each metric's mean over seeds; ``extra`` holds ``std``, ``n``, ``seeds``."""
    names = sorted({k for r in group for k in r.metrics})
    mean, std = {}, {}
    for name in names:
        values = [r.get(name) for r in group]
        values = [v for v in values if math.isfinite(v)]
        if values:
            mean[name] = statistics.fmean(values)
            std[name] = statistics.stdev(values) if len(values) > 1 else 0.0
    first = group[0]
    extra = {**first.extra, "std": std, "n": len(group), "seeds": [r.run.get("seed") for r in group],
             "runs": group}
    return RunResult(first.folder, first.run, mean, extra)


def aggregated(runs: list[RunResult]) -> list[RunResult]:
    """One aggregated row per (dataset, model); references (one each) pass through."""
    return [aggregate(group) for group in by_pair(runs).values()]


def plus_minus(row: RunResult, name: str, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` of a metric (just the mean for a single seed)."""
    value = scale * row.get(name)
    if not math.isfinite(value):
        return "–"
    std = scale * float(row.extra.get("std", {}).get(name, 0.0))
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if row.extra.get("n", 1) > 1 else "")


def seeds_cell(row: RunResult) -> str:
    """How many seeds a row averages ("–" for a reference row, fitted once)."""
    return "–" if row.run.get("reference") else str(row.extra.get("n", 1))


def seed_interval(row: RunResult, name: str, scale: float = 1.0, digits: int = 2) -> str:
    """95 % bootstrap interval of a metric's mean over the row's seeds (``report.stats.seed_ci``),
    for metrics without per-example values (bits per character, FID); "–" for a single seed."""
    from archbench.report.stats import seed_ci

    values = [scale * r.get(name) for r in row.extra.get("runs", [])]
    values = [v for v in values if math.isfinite(v)]
    if len(values) < 2:
        return "–"
    low, high = seed_ci(values)
    return f"{low:.{digits}f}–{high:.{digits}f}"
