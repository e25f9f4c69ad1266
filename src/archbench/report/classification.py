"""The classification part of ``reports/comparison.md``: per dataset, a worded verdict, then every
model's accuracy over its seeds (mean ± std, 95 % bootstrap interval), its paired comparison with
the dataset's best (paired bootstrap pooled over seeds, McNemar's exact test per seed, Holm-corrected
across the dataset's comparisons), calibration (ECE, NLL, Brier), cost (parameters, FLOPs, latency,
training seconds), then figures: reliability diagram, per-class accuracy, accuracy vs cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archbench.report import stats
from archbench.report.replicates import aggregate, by_pair, plus_minus
from archbench.tasks.base import RunResult


@dataclass
class ModelRow:
    """One model on one dataset, over its seeds."""

    name: str
    row: RunResult  # metrics averaged over seeds
    probs: list[np.ndarray] = field(default_factory=list)  # per seed, (examples, classes)
    targets: np.ndarray | None = None
    acc_ci: tuple[float, float] = (math.nan, math.nan)
    versus: stats.Difference | None = None  # this minus the best
    p_holm: float = math.nan
    mcnemar_significant: str = ""
    calibration: dict[str, float] = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray:
        return np.stack([p.argmax(axis=1) == self.targets for p in self.probs])

    @property
    def cost(self) -> float:
        """FLOPs per example where measured, else parameters: what 'cheapest' compares."""
        flops = self.row.get("cost/flops_per_example")
        return flops if math.isfinite(flops) else self.row.get("parameters", math.inf)


def load_predictions(run: RunResult) -> tuple[np.ndarray, np.ndarray] | None:
    path = run.folder / "test_predictions.npz"
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return saved["probs"], saved["targets"]


def model_rows(group: list[RunResult]) -> ModelRow:
    row = ModelRow(group[0].run["model"], aggregate(group))
    loaded = [load_predictions(r) for r in group]
    if all(item is not None for item in loaded) and loaded:
        if any(not np.array_equal(loaded[0][1], targets) for _, targets in loaded[1:]):
            return row  # replicates scored on different test examples (folds): their metrics only
        row.probs = [probs for probs, _ in loaded]
        row.targets = loaded[0][1]
        row.acc_ci = stats.mean_ci(row.correct)
        per_seed = [{"ece": stats.expected_calibration_error(p, row.targets),
                     "nll": stats.negative_log_likelihood(p, row.targets),
                     "brier": stats.brier_score(p, row.targets)} for p in row.probs]
        row.calibration = {k: float(np.mean([c[k] for c in per_seed])) for k in per_seed[0]}
    return row


def compare_with_best(rows: list[ModelRow]) -> ModelRow:
    """Marks every row against the best (highest mean accuracy; fewer FLOPs on a tie); returns it."""
    best = max(rows, key=lambda r: (round(r.row.get("test/acc"), 6), -r.cost))
    others = [r for r in rows if r is not best and r.probs and best.probs
              and np.array_equal(r.targets, best.targets)]
    if not others:
        return best
    for other in others:
        other.versus = stats.paired_bootstrap(other.correct, best.correct)
    for other, adjusted in zip(others, stats.holm([o.versus.p_value for o in others]), strict=True):
        other.p_holm = adjusted
    # McNemar per seed (seed i of each model), Holm across the comparisons within each seed
    seeds = min(len(best.probs), *(len(o.probs) for o in others))
    significant = {id(o): 0 for o in others}
    for s in range(seeds):
        p_values = [stats.mcnemar_exact(o.correct[s], best.correct[s]) for o in others]
        for other, adjusted in zip(others, stats.holm(p_values), strict=True):
            significant[id(other)] += adjusted < stats.ALPHA
    for other in others:
        other.mcnemar_significant = f"{significant[id(other)]}/{seeds}"
    return best


def verdict(dataset: str, best: ModelRow, rows: list[ModelRow]) -> str:
    """The dataset's result in one sentence, worded from the tests."""
    tied = [r for r in rows if r is not best and r.versus is not None and not r.p_holm < stats.ALPHA]
    beaten = [r for r in rows if r is not best and r.versus is not None and r.p_holm < stats.ALPHA]
    text = f"**{dataset}**: best **{best.name}** ({plus_minus(best.row, 'test/acc', 100)} %"
    text += f", n = {best.row.extra.get('n', 1)} {replicates(best.row)}). "
    if tied:
        text += f"Not distinguishable from it: {', '.join(r.name for r in tied)}. "
    if beaten:
        text += f"Significantly below it: {', '.join(r.name for r in beaten)}. "
    cheapest = min([best, *tied], key=lambda r: r.cost)
    if cheapest is not best:
        text += f"Cheapest model indistinguishable from the best: **{cheapest.name}** ({_flops(cheapest)}/example)."
    else:
        text += "It is also the cheapest of the models indistinguishable from it."
    if best.versus is None and not tied and not beaten:
        text += " (No per-example predictions to test against.)"
    return text


def replicates(row: RunResult) -> str:
    """What a pair's runs replicate: seeds, or folds of one seed on different data (one held-out
    speaker each)."""
    seeds = row.extra.get("seeds") or []
    word = "fold" if len(set(seeds)) < len(seeds) else "seed"
    return word if len(seeds) == 1 else f"{word}s"


def _flops(row: ModelRow) -> str:
    flops = row.row.get("cost/flops_per_example")
    if not math.isfinite(flops):
        return f"{int(row.row.get('parameters', 0)):,} parameters"
    return f"{flops / 1e6:.2f} MFLOPs" if flops >= 1e5 else f"{flops / 1e3:.1f} kFLOPs"


def _memory(row: ModelRow) -> str:
    peak = row.row.get("cost/train_peak_mb")
    if not math.isfinite(peak):
        return "–"
    return f"{peak:.1f} MB" if peak >= 1 else f"{1024 * peak:.0f} kB"


def table(rows: list[ModelRow], best: ModelRow, references: list[RunResult]) -> list[str]:
    lines = ["| model | seeds | test acc % (mean ± std) | 95 % CI | Δ vs best [95 % CI] | p (Holm) | "
             "McNemar sig. seeds | ECE | NLL | Brier | parameters | FLOPs/ex | latency b1 / b256 ms | "
             "train peak mem | train s |",
             "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: -r.row.get("test/acc")):
        ci = f"{100 * r.acc_ci[0]:.1f}–{100 * r.acc_ci[1]:.1f}" if math.isfinite(r.acc_ci[0]) else "–"
        if r is best:
            delta, p_value, mcnemar = "best", "", ""
        elif r.versus is not None:
            d = r.versus
            delta = f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
            p_value = f"{r.p_holm:.3f}" + (" *" if r.p_holm < stats.ALPHA else "")
            mcnemar = r.mcnemar_significant
        else:
            delta, p_value, mcnemar = "–", "–", "–"
        cal = r.calibration
        cal_cells = " | ".join(f"{cal[k]:.3f}" if k in cal else "–" for k in ("ece", "nll", "brier"))
        b1, b256 = r.row.get("cost/latency_b1_ms"), r.row.get("cost/latency_b256_ms")
        latency = f"{b1:.3f} / {b256:.4f}" if math.isfinite(b1) else "–"
        lines.append(f"| {r.name} | {r.row.extra.get('n', 1)} | {plus_minus(r.row, 'test/acc', 100)} | {ci} | "
                     f"{delta} | {p_value} | {mcnemar} | {cal_cells} | {int(r.row.get('parameters', 0)):,} | "
                     f"{_flops(r) if math.isfinite(r.row.get('cost/flops_per_example')) else '–'} | "
                     f"{latency} | {_memory(r)} | {plus_minus(r.row, 'train_seconds', digits=1)} |")
    versus = references_versus_best(references, best)
    for ref in sorted(references, key=lambda r: -r.get("test/acc")):
        ci, delta, p_value, mcnemar = versus.get(id(ref), ("–", "–", "–", "–"))
        lines.append(f"| *{ref.run['model']}* | – | {100 * ref.get('test/acc'):.1f} | {ci} | {delta} | {p_value} | "
                     f"{mcnemar} | – | – | – | – | – | – | – | {ref.get('train_seconds'):.1f} |")
    return lines


def references_versus_best(references: list[RunResult], best: ModelRow) -> dict[int, tuple[str, str, str, str]]:
    """Per reference row (by ``id``) scored on the best model's test examples: its accuracy's 95 %
    interval (bootstrap over test examples: it is fitted once), and its paired bootstrap and
    McNemar tests against the best (each seed), Holm-corrected among the references: a family of
    their own, so that adding references leaves the trained models' p-values as they were."""
    paired = [r for r in references if best.probs and "correct" in r.extra
              and np.array_equal(r.extra["targets"], best.targets)]
    cells: dict[int, tuple[str, str, str, str]] = {}
    if not paired:
        return cells
    differences = [stats.paired_bootstrap(r.extra["correct"][None], best.correct) for r in paired]
    mcnemar = [[stats.mcnemar_exact(r.extra["correct"], seed) for r in paired] for seed in best.correct]
    mcnemar = [stats.holm(p_values) for p_values in mcnemar]  # per seed, across the references
    for i, (ref, d, p) in enumerate(zip(paired, differences, stats.holm([d.p_value for d in differences]),
                                        strict=True)):
        low, high = stats.mean_ci(ref.extra["correct"][None])
        significant = sum(seed[i] < stats.ALPHA for seed in mcnemar)
        cells[id(ref)] = (f"{100 * low:.1f}–{100 * high:.1f}",
                          f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
                          f"{p:.3f}" + (" *" if p < stats.ALPHA else ""), f"{significant}/{len(mcnemar)}")
    return cells


def section(runs: list[RunResult], reports_dir: Path) -> list[str]:
    """Markdown lines of the classification section (figures written under ``reports_dir``)."""
    from archbench.report import figures

    trained = [r for r in runs if not r.run.get("reference") and not r.run.get("tuned")]
    references = [r for r in runs if r.run.get("reference")]
    tuned = [r for r in runs if r.run.get("tuned")]
    lines = ["## Classification", "",
             "Per dataset: test accuracy over seed replicates (mean ± sample std; 95 % interval from a",
             "two-level bootstrap over seeds and test examples), each model against the dataset's best",
             "(paired bootstrap of the accuracy difference on the shared test examples, pooled over",
             "seeds; p-values Holm-corrected across the dataset's comparisons, * = significant at 5 %;",
             "McNemar's exact test per seed, Holm-corrected, counted as significant seeds),",
             "calibration on test (ECE with 15 bins, NLL, Brier) and cost (FLOPs per example of one",
             "forward pass, CPU latency per example at batch 1 / 256, peak MB of live tensors in one",
             "training step at the run's batch size). Models were selected on the validation split",
             "only. *Italic rows*: scikit-learn references fitted on the same prepared train+val data",
             "and scored on the same test split (`report/baselines.py`); their interval is over test",
             "examples (one fit), and their tests against the best are Holm-corrected among the references",
             "alone, so that the trained models' p-values do not depend on them.", ""]
    verdicts, details = [], []
    datasets = sorted({r.run["data"] for r in trained})
    for dataset in datasets:
        groups = {model: g for (data, model), g in by_pair(trained).items() if data == dataset}
        rows = [model_rows(g) for g in groups.values()]
        best = compare_with_best(rows)
        verdicts.append(f"- {verdict(dataset, best, rows)}")
        refs = [r for r in references if r.run["data"] == dataset]
        details += [f"### {dataset}", "", *table(rows, best, refs), ""]
        details += tuned_table(groups, [r for r in tuned if r.run["data"] == dataset])
        details += misclassified_texts(rows, [r for g in groups.values() for r in g])
        details += figures.classification_figures(dataset, rows, best, reports_dir)
    figures.accuracy_chart([aggregate(g) for g in by_pair(trained).values()], reports_dir / "comparison.png")
    return [*lines, "### Verdicts", "", *verdicts, "", *details,
            "![test accuracy by dataset and model](comparison.png)", ""]


def misclassified_texts(rows: list[ModelRow], runs: list[RunResult], per_model: int = 3) -> list[str]:
    """Text data: each model's most confident mistakes on the test split (its first seed), with the
    test texts the prepare engine kept (``test_texts.json`` beside the prepared tensors)."""
    import json

    from archbench.report import figures

    folders = {Path(r.run["data_dir"]) for r in runs if r.run.get("data_dir")}
    found = [f / "test_texts.json" for f in folders if (f / "test_texts.json").is_file()]
    if not found:
        return []
    texts = json.loads(found[0].read_text(encoding="utf-8"))
    data = {"data_dir": str(found[0].parent)}
    lines = [f"Most confident mistakes on the test split (first seed; {per_model} per model):", "",
             "| model | text | truth | predicted (p) |", "| --- | --- | --- | --- |"]
    for row in sorted(rows, key=lambda r: -r.row.get("test/acc")):
        if not row.probs or row.targets is None or len(row.targets) != len(texts):
            continue
        probs = row.probs[0]
        names = figures.class_names(data, probs.shape[1])
        wrong = np.flatnonzero(probs.argmax(axis=1) != row.targets)
        for i in wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:per_model]:
            text = texts[i] if len(texts[i]) <= 160 else texts[i][:157] + "…"
            text = text.replace("|", "\\|")
            lines.append(f"| {row.name} | {text} | {names[row.targets[i]]} | "
                         f"{names[int(probs[i].argmax())]} ({probs[i].max():.2f}) |")
    return [*lines, ""]


def tuned_table(defaults: dict[str, list[RunResult]], tuned: list[RunResult]) -> list[str]:
    """Tune mode: each pair's recipe (default) against its best config from an equal-budget study,
    both over the same seeds."""
    if not tuned:
        return []
    lines = ["Default recipe vs tuned (the same Optuna budget for every architecture, then the best "
             "lr / weight decay retrained on every seed; `tune` stage):", "",
             "| model | default acc % | tuned acc % | Δ | best lr | best weight decay | study budget |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for (_, model), group in by_pair(tuned).items():
        row = aggregate(group)
        default = aggregate(defaults[model]) if model in defaults else None
        params = row.run.get("best_params", {})
        before = plus_minus(default, "test/acc", 100) if default else "–"
        delta = f"{100 * (row.get('test/acc') - default.get('test/acc')):+.1f}" if default else "–"
        lines.append(f"| {model} | {before} | {plus_minus(row, 'test/acc', 100)} | {delta} | "
                     f"{params.get('optimizer.lr', float('nan')):.3g} | "
                     f"{params.get('optimizer.weight_decay', float('nan')):.3g} | {row.run.get('budget', '')} |")
    return lines + [""]
