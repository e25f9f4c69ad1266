"""``reports/comparison.md`` + a bar chart from every ``results/train/*/{run,metrics}.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    data: str
    model: str
    parameters: int
    test_acc: float
    test_f1: float
    val_best: float
    epochs: int
    train_seconds: float
    run_id: str


def collect(results_dir: Path) -> list[Row]:
    rows = []
    for run_file in sorted(Path(results_dir).glob("*/run.json")):
        metrics_file = run_file.with_name("metrics.json")
        if not metrics_file.is_file():
            continue
        run, metrics = json.loads(run_file.read_text()), json.loads(metrics_file.read_text())
        rows.append(Row(
            data=run["data"], model=run["model"], parameters=int(metrics.get("parameters", 0)),
            test_acc=metrics.get("test/acc", float("nan")), test_f1=metrics.get("test/f1", float("nan")),
            val_best=metrics.get("val/acc_best", float("nan")), epochs=int(metrics.get("epochs", 0)),
            train_seconds=metrics.get("train_seconds", float("nan")), run_id=run.get("run_id", "")))
    return sorted(rows, key=lambda r: (r.data, -r.test_acc))


def markdown(rows: list[Row]) -> str:
    lines = [
        "# archbench comparison",
        "",
        "Test accuracy of every trained (dataset, model) pair on its held-out test split; models were",
        "selected on the validation split only. Regenerate with `dvc repro` (stage `compare`).",
        "",
        "| dataset | model | parameters | test acc | test macro-F1 | best val acc | epochs | train s | MLflow run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.data} | {r.model} | {r.parameters:,} | {100 * r.test_acc:.1f} % | "
            f"{100 * r.test_f1:.1f} % | {100 * r.val_best:.1f} % | {r.epochs} | "
            f"{r.train_seconds:.1f} | `{r.run_id[:8]}` |")
    lines += ["", "![test accuracy by dataset and model](comparison.png)", ""]
    return "\n".join(lines)


def bar_chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.data for r in rows})
    models = sorted({r.model for r in rows})
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(datasets)), 4))
    for i, model in enumerate(models):
        xs, ys = [], []
        for j, data in enumerate(datasets):
            match = [r for r in rows if r.data == data and r.model == model]
            if match:
                xs.append(j + i * width)
                ys.append(100 * match[0].test_acc)
        bars = ax.bar(xs, ys, width, label=model)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(datasets))], datasets)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncols=min(4, len(models)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results_dir: Path, reports_dir: Path) -> list[Row]:
    rows = collect(results_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "comparison.md").write_text(markdown(rows))
    bar_chart(rows, reports_dir / "comparison.png")
    return rows
