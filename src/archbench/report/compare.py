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


@dataclass
class GenerativeRow:
    key: str
    data: str
    model: str
    parameters: int
    test_fid: float
    fid_floor: float
    fid_untrained: float
    classes_covered: int
    num_classes: int
    epochs: int
    train_seconds: float
    grid: Path | None


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


def collect_generative(results_dir: Path) -> list[GenerativeRow]:
    """GAN runs (those with ``test/fid``), best (lowest FID) first within each dataset."""
    rows = []
    for folder, run, metrics in _runs(results_dir):
        if "test/fid" not in metrics:
            continue
        grid = folder / "samples.png"
        rows.append(GenerativeRow(
            key=folder.name, data=run["data"], model=run["model"],
            parameters=int(metrics.get("parameters", 0)), test_fid=metrics["test/fid"],
            fid_floor=metrics.get("test/fid_real_floor", float("nan")),
            fid_untrained=metrics.get("test/fid_untrained", float("nan")),
            classes_covered=int(metrics.get("test/classes_covered", 0)),
            num_classes=int(run.get("num_classes", 0)), epochs=int(metrics.get("epochs", 0)),
            train_seconds=metrics.get("train_seconds", float("nan")),
            grid=grid if grid.is_file() else None))
    return sorted(rows, key=lambda r: (r.data, r.test_fid))


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


def generative_markdown(rows: list[GenerativeRow]) -> list[str]:
    lines = [
        "## Generative models",
        "",
        "FID between generated samples and the real test split, on the penultimate-layer features of",
        "a cnn archbench trained on the same data (lower is better), beside its two anchors: real",
        "training images (the floor) and the same generator untrained (the ceiling). Coverage: classes",
        "that the classifier finds among the generated samples (a mode-collapse signal).",
        "",
        "| dataset | model | parameters | test FID | floor (real) | untrained | untrained ÷ trained "
        "| classes covered | epochs | train s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.data} | {r.model} | {r.parameters:,} | {r.test_fid:.2f} | {r.fid_floor:.2f} | "
            f"{r.fid_untrained:.1f} | {r.fid_untrained / r.test_fid:.0f}× | "
            f"{r.classes_covered}/{r.num_classes} | {r.epochs} | {r.train_seconds:.1f} |")
    for r in rows:
        if r.grid is not None:
            lines += ["", f"**{r.model} on {r.data}**, samples from fixed noise:", "",
                      f"![{r.model} samples](samples/{r.key}.png)"]
    lines.append("")
    return lines


def markdown(rows: list[Row], text_rows: list[TextRow] | None = None,
             generative_rows: list[GenerativeRow] | None = None) -> str:
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
    if generative_rows:
        lines += generative_markdown(generative_rows)
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


def sweep_markdown(sweep_dir: Path) -> list[str]:
    """One row per finished sweep (``results/sweep/*/sweep.json``)."""
    import json

    summaries = [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob("*/sweep.json"))]
    if not summaries:
        return []
    lines = ["## Hyperparameter sweeps", "",
             "Optuna studies run by `archbench-train -m hparams_search=lr_wd` (stage `sweep`); objective",
             "the best validation value of each trial.", "",
             "| study | trials | complete | pruned | failed | trial-epochs | best value | best params | registered |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for s in summaries:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in s.get("best_params", {}).items())
        registered = s.get("registered") or {}
        reg = f"{registered.get('name')} v{registered.get('version')}" if registered else ""
        best = f"{s['best_value']:.4f}" if s.get("best_value") is not None else "–"
        lines.append(f"| {s['study']} | {s['trials']} | {s['complete']} | {s['pruned']} | {s['fail']} | "
                     f"{s['trial_epochs']} | {best} | {params} | {reg} |")
    return lines + [""]


def write_report(results_dir: Path, reports_dir: Path) -> list[Row]:
    import shutil

    rows = collect(results_dir)
    generative = collect_generative(results_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    for r in generative:
        if r.grid is not None:
            (reports_dir / "samples").mkdir(exist_ok=True)
            shutil.copyfile(r.grid, reports_dir / "samples" / f"{r.key}.png")
    text = markdown(rows, collect_text(results_dir), generative)
    text += "\n".join(sweep_markdown(Path(results_dir).parent / "sweep"))
    (reports_dir / "comparison.md").write_text(text)
    bar_chart(rows, reports_dir / "comparison.png")
    return rows
