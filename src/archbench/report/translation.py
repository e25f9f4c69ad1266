"""The translation section of the comparison report: BLEU of greedy and beam search, perplexity,
BLEU's interval over test sentences and each model against the best (sacreBLEU's paired bootstrap),
validation BLEU against training minutes (``translation_bleu.png``) and sample translations."""

from __future__ import annotations

from pathlib import Path

from archbench.tasks.base import RunResult


def section(runs: list[RunResult], reports_dir: Path) -> list[str]:
    """Markdown lines of the seq2seq task's section (one row per pair, seed means)."""
    from archbench.report.replicates import plus_minus

    runs = sorted(runs, key=lambda r: (r.run["data"], -r.get("test/bleu")))
    tested = bleu_significance(runs)
    lines = ["## Translation", "",
             "Corpus BLEU (sacreBLEU 13a on detokenized hypotheses against the raw lowercased "
             "references) on the test split, greedy and beam search (`decode.beam_size`, GNMT length "
             "penalty `decode.length_penalty`); perplexity of the teacher-forced test loss "
             "(mean ± std over seeds where a pair has several). On the first seed's beam hypotheses, "
             "sacreBLEU's paired bootstrap over test sentences (1,000 resamples): BLEU's 95 % interval, "
             "and each model against the dataset's best (p Holm-corrected, * = significant at 5 %).", "",
             "| data | model | seeds | parameters | epochs | test ppl | BLEU greedy | BLEU beam | 95 % CI "
             "| Δ BLEU vs best | p (Holm) | train min |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in runs:
        interval, delta, p_value = tested.get(id(r), ("–", "–", ""))
        lines.append(f"| {r.run['data']} | {r.run['model']} | {r.extra.get('n', 1)} | "
                     f"{int(r.get('parameters', 0)):,} | {int(r.get('epochs', 0))} | "
                     f"{plus_minus(r, 'test/ppl')} | {plus_minus(r, 'test/bleu_greedy')} | "
                     f"{plus_minus(r, 'test/bleu_beam')} | {interval} | {delta} | {p_value} | "
                     f"{plus_minus(r, 'train_seconds', 1 / 60)} |")
    lines += bleu_curve(runs, reports_dir)
    for r in runs:
        lines += ["", f"**{r.run['model']} on {r.run['data']}** (seed {r.run.get('seed')}), first test "
                  "sentences:", ""]
        lines += _sample_table(r.folder / "translations.tsv")
    return lines + [""]


def _hypotheses(row: RunResult) -> tuple[list[str], list[str]] | None:
    """(references, beam hypotheses) of a row's first seed, from its translations.tsv; None
    without the file or its beam column."""
    import csv

    path = row.extra.get("runs", [row])[0].folder / "translations.tsv"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    if not table or "beam" not in table[0]:
        return None
    return [t["reference"] for t in table], [t["beam"] for t in table]


def bleu_significance(runs: list[RunResult], resamples: int = 1000) -> dict[int, tuple[str, str, str]]:
    """Per row (by ``id``): its beam BLEU's 95 % interval over test sentences, its difference from
    the dataset's best and the Holm-corrected p of sacreBLEU's paired bootstrap (Koehn 2004, as
    Moses' script does it; sacreBLEU's seed 12345 unless ``SACREBLEU_SEED`` says otherwise)."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    from archbench.report import stats

    cells: dict[int, tuple[str, str, str]] = {}
    for data in dict.fromkeys(r.run["data"] for r in runs):
        rows = [(r, found) for r in runs if r.run["data"] == data for found in [_hypotheses(r)] if found]
        if not rows or any(found[0] != rows[0][1][0] for _, found in rows):
            continue  # no hypotheses, or models tested on different sentences: nothing paired
        references = rows[0][1][0]
        # best first, by the BLEU each first seed logged on these very hypotheses (sacreBLEU's, via torchmetrics)
        rows.sort(key=lambda pair: -pair[0].extra.get("runs", [pair[0]])[0].get("test/bleu_beam"))
        systems = [(str(i), hypotheses) for i, (_, (_, hypotheses)) in enumerate(rows)]
        _, results = PairedTest(systems, {"BLEU": BLEU()}, [references], test_type="bs", n_samples=resamples)()
        [scores] = [v for k, v in results.items() if k != "System"]
        best = scores[0].score
        p_values = stats.holm([s.p_value for s in scores[1:]]) if len(scores) > 1 else []
        for i, ((row, _), score) in enumerate(zip(rows, scores, strict=True)):
            interval = f"{score.mean - score.ci:.1f}–{score.mean + score.ci:.1f}"
            if i == 0:
                cells[id(row)] = (interval, "best" if len(rows) > 1 else "–", "")
            else:
                p = p_values[i - 1]
                cells[id(row)] = (interval, f"{score.score - best:+.1f}", f"{p:.3f}" + (" *" if p < stats.ALPHA else ""))
    return cells


def _curve(run: RunResult) -> list[tuple[float, float]]:
    """(minutes, val BLEU) per epoch of one run; minutes spread the run's training time evenly over
    its epochs (every epoch trains on the same data and decodes the same validation split)."""
    import csv

    path = run.folder / "curves.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/bleu")]
    per_epoch = run.get("train_seconds") / 60 / max(1.0, run.get("epochs"))
    return [((int(row["epoch"]) + 1) * per_epoch, float(row["val/bleu"])) for row in rows]


def bleu_curve(runs: list[RunResult], reports_dir: Path) -> list[str]:
    """Validation BLEU (greedy) against training minutes: a table and translation_bleu.png."""
    curves = {f"{r.run['data']} {r.run['model']}": _curve(r.extra.get("runs", [r])[0]) for r in runs}
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    lines = ["", "Validation BLEU (greedy) after each epoch against training minutes (first seed):", "",
             "| data and model | " + " | ".join(f"epoch {i + 1}" for i in range(max(map(len, curves.values())))) + " |",
             "| --- |" + " ---: |" * max(map(len, curves.values()))]
    for name, points in curves.items():
        ax.plot([m for m, _ in points], [b for _, b in points], marker="o", label=name)
        lines.append(f"| {name} | " + " | ".join(f"{b:.1f} ({m:.0f} min)" for m, b in points) + " |")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("val BLEU (greedy)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(reports_dir) / "translation_bleu.png", dpi=100)
    plt.close(fig)
    return [*lines, "", "![val BLEU against minutes](translation_bleu.png)"]


def _sample_table(path: Path, count: int = 3) -> list[str]:
    """The first ``count`` rows of a run's translations.tsv as a markdown table."""
    import csv

    if not path.is_file():
        return ["(no translations.tsv)"]
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    header, rows = rows[0], rows[1 : count + 1]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _cell(text: str) -> str:
    """Table-safe text: pipes escaped, ``<unk>`` shown rather than taken for an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
