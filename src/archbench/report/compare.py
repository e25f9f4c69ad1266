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


@dataclass
class TextRow:
    data: str
    model: str
    parameters: int
    val_bpc: float
    test_bpc: float
    test_loss: float
    train_seconds: float
    sample: str


def _runs(results_dir: Path):
    for run_file in sorted(Path(results_dir).glob("*/run.json")):
        metrics_file = run_file.with_name("metrics.json")
        if metrics_file.is_file():
            yield run_file.parent, json.loads(run_file.read_text()), json.loads(metrics_file.read_text())


def collect_text(results_dir: Path) -> list[TextRow]:
    """Language-model runs (those with ``test/bpc``), best first."""
    import math

    rows = []
    for folder, run, metrics in _runs(results_dir):
        if "test/bpc" not in metrics:
            continue
        sample = folder / "sample.txt"
        rows.append(TextRow(
            data=run["data"], model=run["model"], parameters=int(metrics.get("parameters", 0)),
            val_bpc=metrics.get("val/loss_best", float("nan")) / math.log(2),
            test_bpc=metrics["test/bpc"], test_loss=metrics.get("test/loss", float("nan")),
            train_seconds=metrics.get("train_seconds", float("nan")),
            sample=sample.read_text()[:300] if sample.is_file() else ""))
    return sorted(rows, key=lambda r: (r.data, r.test_bpc))


def collect(results_dir: Path) -> list[Row]:
    """Classification runs (those with ``test/acc``), best first within each dataset."""
    rows = []
    for _, run, metrics in _runs(results_dir):
        if "test/acc" not in metrics:
            continue
        rows.append(Row(
            data=run["data"], model=run["model"], parameters=int(metrics.get("parameters", 0)),
            test_acc=metrics.get("test/acc", float("nan")), test_f1=metrics.get("test/f1", float("nan")),
            val_best=metrics.get("val/acc_best", float("nan")), epochs=int(metrics.get("epochs", 0)),
            train_seconds=metrics.get("train_seconds", float("nan")), run_id=run.get("run_id", "")))
    return sorted(rows, key=lambda r: (r.data, -r.test_acc))


def markdown(rows: list[Row], text_rows: list[TextRow] | None = None) -> str:
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
    if text_rows:
        lines += [
            "## Character language models",
            "",
            "Bits per character on the held-out contiguous test text (lower is better).",
            "",
            "| corpus | model | parameters | best val bpc | test bpc | test nats/char | train s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in text_rows:
            lines.append(f"| {r.data} | {r.model} | {r.parameters:,} | {r.val_bpc:.3f} | "
                         f"{r.test_bpc:.3f} | {r.test_loss:.3f} | {r.train_seconds:.1f} |")
        for r in text_rows:
            lines += ["", f"**{r.model} on {r.data}**, last sample:", "", "```", r.sample.strip("\n"), "```"]
        lines.append("")
    return "\n".join(lines)


def bar_chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.data for r in rows})
    models = sorted({r.model for r in rows})
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(models) * len(datasets) + 2), 4))
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
    ax.set_ylim(0, 120)  # headroom so the legend sits above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize=8, ncols=min(5, len(models)), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results_dir: Path, reports_dir: Path) -> list[Row]:
    rows = collect(results_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "comparison.md").write_text(markdown(rows, collect_text(results_dir)))
    bar_chart(rows, reports_dir / "comparison.png")
    return rows
