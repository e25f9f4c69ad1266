"""``reports/efficiency.md``: what each architecture buys in samples. Test accuracy against the share
of the training split it trained on (``data.train_fraction``; validation and test splits unchanged),
mean over seeds with a ±std band, from ``make efficiency`` runs plus the pipeline's full-data runs."""

from __future__ import annotations

from pathlib import Path

from archbench.report.compare import collect
from archbench.report.replicates import aggregate, plus_minus


def efficiency_rows(runs) -> dict[str, dict[str, dict[float, object]]]:
    """dataset → model → fraction → the seed-aggregated row."""
    groups: dict[tuple[str, str, float], list] = {}
    for run in runs:
        key = (run.run["data"], run.run["model"], float(run.run.get("train_fraction", 1.0)))
        groups.setdefault(key, []).append(run)
    table: dict[str, dict[str, dict[float, object]]] = {}
    for (data, model, fraction), group in sorted(groups.items()):
        table.setdefault(data, {}).setdefault(model, {})[fraction] = aggregate(group)
    return {data: models for data, models in table.items()
            if any(f < 1 for rows in models.values() for f in rows)}


def write_efficiency(dirs: list[Path], reports_dir: Path) -> int:
    """Writes ``efficiency.md`` and ``efficiency/<data>.png`` (not ``figures/``: that folder is the
    compare stage's DVC output, which a re-run clears); returns the datasets shown."""
    runs = [r for d in dirs for r in collect(d, label=False).get("classification", [])]
    table = efficiency_rows(runs)
    lines = ["# Data efficiency", "",
             "Test accuracy (%, mean ± std over seeds) when each architecture trains on a seeded random",
             "share of the training split (nested across shares for one seed); same validation and test",
             "splits, same recipe. Regenerate with `make efficiency`.", ""]
    for data, models in table.items():
        fractions = sorted({f for rows in models.values() for f in rows})
        lines += [f"## {data}", "", "| model | " + " | ".join(f"{100 * f:.0f} %" for f in fractions) + " |",
                  "| --- |" + " ---: |" * len(fractions)]
        for model, rows in sorted(models.items(), key=lambda m: -m[1][max(m[1])].get("test/acc")):
            cells = [plus_minus(rows[f], "test/acc", 100) if f in rows else "–" for f in fractions]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        plot(data, models, reports_dir / "efficiency" / f"{data}.png")
        lines += ["", f"![data efficiency, {data}](efficiency/{data}.png)", ""]
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "efficiency.md").write_text("\n".join(lines))
    return len(table)


def plot(data: str, models, path: Path) -> None:
    from archbench.report.figures import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, rows in sorted(models.items()):
        fractions = sorted(rows)
        means = [100 * rows[f].get("test/acc") for f in fractions]
        stds = [100 * rows[f].extra.get("std", {}).get("test/acc", 0.0) for f in fractions]
        xs = [100 * f for f in fractions]
        ax.plot(xs, means, marker="o", markersize=3, label=model)
        ax.fill_between(xs, [m - s for m, s in zip(means, stds, strict=True)],
                        [m + s for m, s in zip(means, stds, strict=True)], alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks([10, 25, 50, 100], ["10 %", "25 %", "50 %", "100 %"])
    ax.set_xlabel("share of the training split")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{data}: data efficiency (mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
