"""Per-example test rows of a pair's seeds (``test_predictions.npz``) and what the tables make of
them: a two-level interval of the metric, and each model against its dataset's best by a paired
bootstrap on the shared test examples, Holm-corrected. Regression, rating and ranking tables share
these; classification has its own, with McNemar's test beside the bootstrap."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from archbench.tasks.base import RunResult


def seed_arrays(row: RunResult, read: Callable[[Any], np.ndarray]) -> np.ndarray | None:
    """``(seeds, examples)``: ``read`` of each seed's ``test_predictions.npz`` (e.g. squared errors
    from its predictions and targets); None without every seed's file or when their sizes differ."""
    paths = [r.folder / "test_predictions.npz" for r in row.extra.get("runs", [])]
    if not paths or not all(p.is_file() for p in paths):
        return None
    arrays = []
    for path in paths:
        with np.load(path) as saved:
            arrays.append(np.asarray(read(saved), dtype=float))
    return np.stack(arrays) if len({a.size for a in arrays}) == 1 else None


def squared_errors(saved: Any) -> np.ndarray:
    """A ``seed_arrays`` reader: squared error of each test prediction."""
    return (saved["predictions"] - saved["targets"]) ** 2


def versus_best(runs: list[RunResult], arrays: dict[int, np.ndarray | None], compare: Callable[..., Any],
                lower_is_better: bool, digits: int = 2) -> dict[int, tuple[str, str]]:
    """Per row (by ``id``): ``compare(its arrays, the best's)`` (a ``stats.Difference``) as
    "difference [95 % CI]" and the Holm-corrected p ("best" for the dataset's best trained model);
    rows without arrays, and datasets with fewer than two such rows, get nothing. ``arrays``: each
    row's ``seed_arrays``, whose mean over everything ranks the rows. Reference rows are compared
    with the same best, Holm-corrected among themselves, so they leave the trained rows' p as is."""
    cells: dict[int, tuple[str, str]] = {}
    for data in dict.fromkeys(r.run["data"] for r in runs):
        rows = [(r, a) for r in runs if r.run["data"] == data for a in [arrays.get(id(r))] if a is not None]
        trained = [(r, a) for r, a in rows if not r.run.get("reference")]
        if not trained or len({a.shape[1] for _, a in rows}) != 1:
            continue
        sign = 1 if lower_is_better else -1
        (best, best_array), *others = sorted(trained, key=lambda pair: sign * pair[1].mean())
        references = [(r, a) for r, a in rows if r.run.get("reference")]
        if not others and not references:
            continue
        cells[id(best)] = ("best", "")
        for family in (others, references):
            cells.update(_compared(family, best_array, compare, digits))
    return cells


def _compared(family: list[tuple[RunResult, np.ndarray]], best: np.ndarray, compare: Callable[..., Any],
              digits: int) -> dict[int, tuple[str, str]]:
    """Each row of ``family`` against ``best``, p-values Holm-corrected within the family."""
    from archbench.report import stats

    differences = [compare(a, best) for _, a in family]
    return {id(row): (f"{diff.mean:+.{digits}f} [{diff.low:+.{digits}f}, {diff.high:+.{digits}f}]",
                      f"{p:.3f}" + (" *" if p < stats.ALPHA else ""))
            for (row, _), diff, p in zip(family, differences, stats.holm([d.p_value for d in differences]),
                                         strict=True)}


def row_arrays(row: RunResult, read: Callable[[Any], np.ndarray], reference_key: str) -> np.ndarray | None:
    """``seed_arrays`` of a trained row; a reference row's own per-example array (``extra``, from
    ``report.baselines``) as one seed."""
    if row.run.get("reference"):
        found = row.extra.get(reference_key)
        return None if found is None else np.asarray(found, dtype=float)[None]
    return seed_arrays(row, read)


def pooled_rmse(per_seed_rmse: list[float], digits: int = 2) -> str:
    """The root of the seeds' mean MSE, ± the standard deviation of the per-seed RMSEs."""
    pooled = math.sqrt(statistics.fmean(r * r for r in per_seed_rmse))
    spread = f" ± {statistics.stdev(per_seed_rmse):.{digits}f}" if len(per_seed_rmse) > 1 else ""
    return f"{pooled:.{digits}f}{spread}"


def interval(values: np.ndarray | None, digits: int = 2, transform: Callable[[float], float] = float) -> str:
    """95 % interval of the mean of ``(seeds, examples)`` values, resampled over seeds and test
    examples (``report.stats.mean_ci``), each end through ``transform`` (``math.sqrt`` turns an
    MSE interval into an RMSE one); "–" without every seed's rows."""
    from archbench.report.stats import mean_ci

    if values is None:
        return "–"
    low, high = mean_ci(values)
    return f"{transform(low):.{digits}f}–{transform(high):.{digits}f}"
