"""The speech parts of the comparison report: spoken-digit accuracy on the official split against
leave-one-speaker-out (every held-out speaker, and their mean), a confusion matrix, and the CTC
transcription table (digit and string error rates)."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from archbench.tasks.base import RunResult


def _source(run: RunResult) -> dict:
    """The prepared data's ``source`` record (kind, split, held-out speaker) of a run."""
    meta = Path(str(run.run.get("data_dir", ""))) / "meta.json"
    if not meta.is_file():
        return {}
    body = json.loads(meta.read_text())
    features = (body.get("extra", {}).get("audio") or {}).get("features", {})
    named = {"logmel": "log-mel", "mfcc": "MFCC"}.get(features.get("kind"), str(features.get("kind")))
    return {"kind": body.get("kind"), "features": named + (" − utterance mean" if features.get("utterance_mean") else ""),
            **body.get("source", {})}


def audio_section(runs: list[RunResult], reports_dir: Path) -> list[str]:
    """Per model: official-split accuracy (mean over seeds) and each held-out speaker's accuracy
    with their mean: the speaker-independent figure real use meets."""
    audio = [(r, _source(r)) for r in runs if not r.run.get("reference") and not r.run.get("tuned")]
    audio = [(r, s) for r, s in audio if s.get("kind") == "audio"]
    if not audio:
        return []
    official: dict[str, list[float]] = {}
    held: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    features: dict[tuple[str, str], str] = {}  # (model, official | speaker) → the features it read
    for run, source in audio:
        model = run.run["model"]
        features[(model, "speaker" if source.get("split") == "speaker" else "official")] = source["features"]
        params[model] = int(run.get("parameters", 0))
        seconds.setdefault(model, []).append(run.get("train_seconds"))
        if source.get("split") == "speaker":
            held.setdefault(model, {}).setdefault(str(source.get("test_speaker")), []).append(run.get("test/acc"))
        else:
            official.setdefault(model, []).append(run.get("test/acc"))
    speakers = sorted({s for per in held.values() for s in per})
    lines = ["## Spoken digits (audio)", "",
             "FSDD, 96 frames (10 ms) of 40 log-mel bands or 13 MFCCs per recording (column *features*: "
             "official split / speaker held out), each model reading them in its own audio form "
             "(`model.audio_view`). *Official*: the dataset's split (recording index 0-4 test, "
             "the same six speakers in training); mean over seeds. *Speaker held out*: one speaker's 500 "
             "recordings are the test set, the other five train; each column one fold, *mean* over the "
             "folds trained (`data=fsdd_speaker`). In the classification tables above, n counts the "
             "folds for fsdd_speaker.", "",
             "| model | features | parameters | official acc % | speaker held out: mean % | "
             + " | ".join(speakers) + " | train s (mean) |",
             "| --- | --- | ---: | ---: | ---: |" + " ---: |" * len(speakers) + " ---: |"]
    for model in sorted(params, key=lambda m: -statistics.fmean(official.get(m, [0.0]))):
        folds = {s: statistics.fmean(v) for s, v in held.get(model, {}).items()}
        mean = f"{100 * statistics.fmean(folds.values()):.1f} ({len(folds)} folds)" if folds else "–"
        cells = " | ".join(f"{100 * folds[s]:.1f}" if s in folds else "–" for s in speakers)
        base = f"{100 * statistics.fmean(official[model]):.1f}" if model in official else "–"
        read = " / ".join(features[(model, split)] for split in ("official", "speaker") if (model, split) in features)
        lines.append(f"| {model} | {read} | {params[model]:,} | {base} | {mean} | {cells}{' | ' if speakers else ''}"
                     f"{statistics.fmean(seconds[model]):.0f} |")
    lines += ["", *_confusion(audio, official, reports_dir)]
    return lines + [""]


def _confusion(audio, official: dict[str, list[float]], reports_dir: Path) -> list[str]:
    """The official-split confusion matrix of the best model (its first seed), copied beside the report."""
    if not official:
        return []
    best = max(official, key=lambda m: statistics.fmean(official[m]))
    run = next(r for r, s in audio if r.run["model"] == best and s.get("split") != "speaker")
    image = run.folder / "confusion.png"
    if not image.is_file():
        return []
    target = Path(reports_dir) / "speech_confusion.png"
    shutil.copyfile(image, target)
    return [f"Confusion matrix of **{best}** on the official test split (seed {run.run.get('seed')}):", "",
            f"![{best} confusion on FSDD]({target.name})", ""]


def ctc_section(runs: list[RunResult]) -> list[str]:
    """Markdown lines of the ctc task's section (one row per pair, seed means)."""
    from archbench.report.replicates import plus_minus

    runs = sorted(runs, key=lambda r: (r.run["data"], r.get("test/wer")))
    lines = ["## Transcription (CTC)", "",
             "Spoken digit strings of 1-7 real recordings with random silences, the test strings built "
             "only from test recordings. Digit error rate = edit distance / reference digits, pooled over "
             "the test strings; string error rate = strings not transcribed exactly (beam search). Greedy "
             "= best path; beam = prefix beam search without a language model (mean ± std over seeds). "
             "The beam digit error rate's 95 % interval: a two-level bootstrap over seeds and test "
             "strings, from each seed's transcripts.tsv.", "",
             "| data | model | seeds | parameters | epochs | digit error % greedy | digit error % beam | 95 % CI | "
             "string error % | train min |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in runs:
        lines.append(f"| {r.run['data']} | {r.run['model']} | {r.extra.get('n', 1)} | {int(r.get('parameters', 0)):,} | "
                     f"{int(r.get('epochs', 0))} | {plus_minus(r, 'test/wer_greedy', 100)} | "
                     f"{plus_minus(r, 'test/wer_beam', 100)} | {_error_interval(r)} | {plus_minus(r, 'test/ser', 100)} | "
                     f"{plus_minus(r, 'train_seconds', 1 / 60)} |")
    for r in runs:
        lines += ["", f"**{r.run['model']} on {r.run['data']}**: test strings it got wrong (first seed):", ""]
        lines += _mistakes(r.extra.get("runs", [r])[0].folder / "transcripts.tsv")
    return lines + [""]


def _error_interval(row: RunResult) -> str:
    """95 % interval of the beam digit error rate, in percent; "–" without every seed's transcripts
    of the same test strings."""
    import numpy as np
    from torchmetrics.functional.text import word_error_rate

    from archbench.report.stats import ratio_ci

    tables = []
    for run in row.extra.get("runs", [row]):
        path = run.folder / "transcripts.tsv"
        if not path.is_file():
            return "–"
        tables.append([line.split("\t") for line in path.read_text().splitlines()[1:]])
    references = [r[0] for r in tables[0]]
    if not references or any([r[0] for r in t] != references for t in tables):
        return "–"
    digits = np.array([len(r.split()) for r in references], dtype=float)
    errors = np.array([[round(float(word_error_rate(r[2], r[0])) * n) for r, n in zip(t, digits, strict=True)]
                       for t in tables], dtype=float)  # edit errors per string: its WER × its digits
    low, high = ratio_ci(errors, digits)
    return f"{100 * low:.1f}–{100 * high:.1f}"


def _mistakes(path: Path, count: int = 5) -> list[str]:
    if not path.is_file():
        return ["(no transcripts.tsv)"]
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    wrong = [row for row in rows if row[2] != row[0]]
    lines = [f"{len(wrong)} of {len(rows)} strings wrong.", "", "| reference | greedy | beam |", "| --- | --- | --- |"]
    return lines + [f"| {r[0]} | {r[1] or '(nothing)'} | {r[2] or '(nothing)'} |" for r in wrong[:count]]
