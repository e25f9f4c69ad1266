"""Figures of the comparison (matplotlib, Agg): accuracy bars with seed error bars, and per dataset a
reliability diagram, accuracy-vs-cost Pareto plots and a per-class accuracy table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from archbench.report import stats


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_chart(rows, path: Path) -> None:
    """Grouped bars: mean test accuracy per dataset, one bar per model, seed std as error bars."""
    plt = _pyplot()
    datasets = sorted({r.run["data"] for r in rows})
    models = sorted({r.run["model"] for r in rows})
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(models) * len(datasets) + 2), 4))
    for i, model in enumerate(models):
        xs, ys, errs = [], [], []
        for j, data in enumerate(datasets):
            match = [r for r in rows if r.run["data"] == data and r.run["model"] == model]
            if match:
                xs.append(j + i * width)
                ys.append(100 * match[0].get("test/acc"))
                errs.append(100 * match[0].extra.get("std", {}).get("test/acc", 0.0))
        bars = ax.bar(xs, ys, width, yerr=errs, capsize=2, label=model)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(datasets))], datasets)
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_ylim(0, 120)  # headroom so the legend sits above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize=8, ncols=min(5, len(models)), loc="upper center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower cost, higher accuracy),
    ordered by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def classification_figures(dataset: str, rows, best, reports_dir: Path) -> list[str]:
    """Writes ``figures/<dataset>-{reliability,pareto}.png``; returns the markdown that shows them
    and the per-class accuracy table (collapsed)."""
    import re

    folder = reports_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", dataset).strip("_")  # "csv (wine.csv)": a file name without spaces
    lines = []
    with_predictions = [r for r in rows if r.probs]
    if with_predictions:
        reliability_diagram(with_predictions, folder / f"{stem}-reliability.png", dataset)
        lines += [f"![reliability diagram, {dataset}](figures/{stem}-reliability.png)", ""]
    if curves_plot(rows, folder / f"{stem}-curves.png", dataset):
        lines += [f"![validation curves, {dataset}](figures/{stem}-curves.png)", ""]
    if pareto_plot(rows, folder / f"{stem}-pareto.png", dataset):
        lines += [f"![accuracy vs cost, {dataset}](figures/{stem}-pareto.png)", ""]
    if best.probs and with_predictions:
        lines += per_class_table(with_predictions, best)
    return lines


def reliability_diagram(rows, path: Path, dataset: str) -> None:
    """Accuracy against confidence per bin, every model's seeds pooled, on one set of axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for r in rows:
        conf, acc, counts = stats.reliability(np.concatenate(r.probs), np.tile(r.targets, len(r.probs)))
        shown = counts > 0
        ax.plot(conf[shown], acc[shown], marker="o", markersize=3,
                label=f"{r.name} (ECE {r.calibration.get('ece', math.nan):.3f})")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{dataset}: reliability, 15 bins, seeds pooled", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_plot(rows, path: Path, dataset: str, metrics: tuple[str, ...] = ("val/acc", "val/loss")) -> bool:
    """Validation curves of every model of a dataset on shared axes: the mean over seeds per epoch
    and a band from the lowest to the highest seed."""
    import pandas as pd

    curves = {}
    for r in rows:
        paths = [run.folder / "curves.csv" for run in r.row.extra.get("runs", [])]
        frames = [pd.read_csv(path) for path in paths if path.is_file()]
        if frames:
            curves[r.name] = pd.concat(frames).groupby("epoch")
    if not curves:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, metric in zip(axes, metrics, strict=True):
        for name, grouped in sorted(curves.items()):
            if metric not in grouped.obj.columns:
                continue
            mean, low, high = grouped[metric].mean(), grouped[metric].min(), grouped[metric].max()
            line, = ax.plot(mean.index, mean.values, label=name, linewidth=1)
            ax.fill_between(mean.index, low.values, high.values, alpha=0.15, color=line.get_color())
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric.endswith("loss"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7, ncols=2)
    fig.suptitle(f"{dataset}: validation curves (mean over seeds, band: min–max; loss = each model's own criterion)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def pareto_plot(rows, path: Path, dataset: str) -> bool:
    """Test accuracy against FLOPs per example and against training seconds, frontier drawn."""
    measured = [r for r in rows if math.isfinite(r.row.get("cost/flops_per_example"))]
    if not measured:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "cost/flops_per_example", "FLOPs per example (log)"),
                           (axes[1], "train_seconds", "training seconds (log)")):
        points = [(max(r.row.get(key), 1e-9), 100 * r.row.get("test/acc")) for r in measured]
        errors = [100 * r.row.extra.get("std", {}).get("test/acc", 0.0) for r in measured]
        for (x, y), err, r in zip(points, errors, measured, strict=True):
            ax.errorbar(x, y, yerr=err, fmt="o", capsize=2)
            ax.annotate(r.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(points)
        ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post",
                color="black", linewidth=0.8, label="Pareto frontier")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{dataset}: accuracy vs cost (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def class_names(run: dict, classes: int) -> list[str]:
    """The class names in the prepared data's meta.json (via the run's ``data_dir``), else indices."""
    import json

    meta = Path(run.get("data_dir") or "") / "meta.json"
    if run.get("data_dir") and meta.is_file():
        names = json.loads(meta.read_text()).get("class_names") or []
        if len(names) == classes:
            return [str(n) for n in names]
    return [str(c) for c in range(classes)]


def per_class_table(rows, best) -> list[str]:
    """Per-class accuracy (recall), seeds pooled: models × classes, the best model's row in full
    and the others as differences from it (collapsed in the report)."""
    classes = best.probs[0].shape[1]

    def recall(r) -> np.ndarray:
        predicted = np.concatenate([p.argmax(axis=1) for p in r.probs])
        truth = np.tile(r.targets, len(r.probs))
        return np.array([np.mean(predicted[truth == c] == c) if np.any(truth == c) else math.nan
                         for c in range(classes)])

    reference = recall(best)
    names = class_names(best.row.run, classes)
    header = " | ".join(names)
    lines = ["<details><summary>per-class accuracy (%): the best model, then each model's difference "
             "from it</summary>", "", f"| model | {header} |", "| --- |" + " ---: |" * classes,
             f"| **{best.name}** | " + " | ".join(f"{100 * v:.1f}" for v in reference) + " |"]
    for r in rows:
        if r is not best:
            lines.append(f"| {r.name} | " + " | ".join(f"{100 * v:+.1f}" for v in recall(r) - reference) + " |")
    return lines + ["", "</details>", ""]
