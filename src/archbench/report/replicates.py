"""Seed replicates as the report sees them: runs grouped by (dataset, model), their metrics averaged."""

from __future__ import annotations

import math
import statistics

from archbench.tasks.base import RunResult


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
