"""Is a recipe change real? Two arms of seed replicates compared on one metric.

Each arm is one or more replica summaries: the ``<sweep dir>.json`` that ``archbench-train -m
replicas=seeds … hydra.sweep.dir=DIR`` writes beside ``DIR``. Printed: each arm's seeds, mean and
standard deviation; the difference of the means with a 95 % Welch interval, because two configs draw
other initial weights from the same seed and so their seeds do not pair; and that interval's
half-width, the smallest difference these seeds can resolve.

Its command line is ``archbench-trial`` (archbench.cli.trial).
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

from archbench.errors import ConfigError


@dataclass(frozen=True)
class Difference:
    """``trial − base`` of the arms' means, its 95 % Welch interval and that interval's half-width."""

    base: list[float]
    trial: list[float]
    delta: float
    low: float
    high: float

    @property
    def resolution(self) -> float:
        return (self.high - self.low) / 2

    @property
    def constant(self) -> bool:
        """Each arm reads the same on every seed: the interval has no spread to stand on."""
        return statistics.pstdev(self.base) == 0 and statistics.pstdev(self.trial) == 0

    @property
    def resolved(self) -> bool:
        return not self.constant and (self.low > 0 or self.high < 0)


def _seeds(summary: Path) -> dict[str, dict] | None:
    """A replica summary's per-seed metrics, ``{seed: {metric: value}}``; None for a file that is
    not one (unreadable, not JSON, or not shaped so)."""
    try:
        seeds = json.loads(summary.read_text()).get("seeds") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(seeds, dict) or not all(isinstance(m, dict) for m in seeds.values()):
        return None
    return seeds


def default_metric(summary: Path) -> str:
    """What a trial decides by unless told: a classifier's ``val/acc_then_loss_best``, else the
    runs' one ``val/…_best`` (the metric their checkpoint was kept by)."""
    seeds = _seeds(summary) or {}  # a file that is no summary: arm_values says so
    names = sorted({name for metrics in seeds.values() for name in metrics})
    best = [n for n in names if n.startswith("val/") and n.endswith("_best")]
    if "val/acc_then_loss_best" in best or not best:
        return "val/acc_then_loss_best"
    if len(best) > 1:
        raise ConfigError(f"{summary}: its runs have several validation metrics ({', '.join(best)}): "
                          "choose one with --metric")
    return best[0]


def arm_values(summaries: list[Path], metric: str) -> list[float]:
    """The metric of every seed of the summaries (one arm); a seed in two of them is an error."""
    values: dict[str, float] = {}
    for path in summaries:
        if not path.is_file():
            raise ConfigError(f"no replica summary {path}: give the .json written beside a replicas=seeds sweep dir")
        seeds = _seeds(path)
        if seeds is None:
            raise ConfigError(f"{path} is not a replica summary (a JSON object with per-seed metrics)")
        for seed, metrics in seeds.items():
            if metric not in metrics:
                raise ConfigError(f"{path}: seed {seed} has no {metric!r}; valid: {', '.join(sorted(metrics))}")
            if seed in values:
                raise ConfigError(f"{path}: seed {seed} is already in this arm (an arm's seeds must differ)")
            value = metrics[metric]
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{path}: seed {seed}'s {metric} is {value!r}, not a finite number (a failed run?)")
            values[seed] = float(value)
    if len(values) < 2:
        raise ConfigError(f"{metric}: an arm needs at least 2 seeds, got {len(values)} in {', '.join(map(str, summaries))}")
    return list(values.values())


def welch_difference(base: list[float], trial: list[float], confidence: float = 0.95) -> Difference:
    """``mean(trial) − mean(base)`` with scipy's Welch interval (unequal variances)."""
    from scipy import stats

    with warnings.catch_warnings():  # scipy's "catastrophic cancellation" when an arm is constant
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(trial, base, equal_var=False)
    interval = result.confidence_interval(confidence)
    delta = statistics.fmean(trial) - statistics.fmean(base)
    return Difference(base, trial, delta, float(interval.low), float(interval.high))


def describe(diff: Difference, metric: str, scale: float = 1.0) -> str:
    """A few lines: each arm, then the difference, its interval and whether it is resolved."""
    def arm(name: str, values: list[float]) -> str:
        shown = ", ".join(f"{v * scale:.2f}" for v in values)
        return (f"{name}: {statistics.fmean(values) * scale:.2f} ± {statistics.stdev(values) * scale:.2f} "
                f"over {len(values)} seeds ({shown})")

    verdict = ("not judged: each arm reads the same on every seed, so the seeds show no spread to weigh the "
               "difference against (judge by a finer metric, e.g. the loss)" if diff.constant else
               "resolved: the interval excludes 0" if diff.resolved else
               f"not resolved: the interval spans 0; these seeds resolve about ±{diff.resolution * scale:.2f}")
    title = metric
    if metric.startswith("val/acc_then_loss"):  # see tasks.classification: ClassificationTask.on_validation_epoch_end
        title += " (accuracy plus a loss tie-break worth under half a validation example, so it can read above 100 %)"
    return "\n".join([title, arm("base ", diff.base), arm("trial", diff.trial),
                      f"trial − base: {diff.delta * scale:+.2f} [{diff.low * scale:+.2f}, {diff.high * scale:+.2f}] "
                      f"(95 % Welch interval): {verdict}"])
