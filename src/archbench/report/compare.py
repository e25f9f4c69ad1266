"""``reports/comparison.md``: every task's section over its finished runs, then the sweeps.

Runs are ``results/train/*/{run,metrics}.json``; each names its task, and the task plug-in writes
its own section (``Task.report_section``), so a new task brings its report with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from archbench.tasks.base import RunResult


def finished_runs(results_dir: Path) -> Iterator[Path]:
    """The ``run.json`` of every finished run below ``results_dir`` (one beside a ``metrics.json``),
    in path order: ``<pair>/`` or ``<pair>/seed<N>/``."""
    for run_file in sorted(Path(results_dir).rglob("run.json")):
        if run_file.with_name("metrics.json").is_file():
            yield run_file


def collect(results_dir: Path, label: bool = True) -> dict[str, list[RunResult]]:
    """Finished runs grouped by task name. With ``label``, runs of one (dataset, model) with other
    settings than the seed are labelled apart, and repeats of a run's settings and seed left out
    (said once); without, as they are (for callers that group them by a setting themselves)."""
    from archbench.report.replicates import label_experiments

    runs: dict[str, list[RunResult]] = {}
    for run_file in finished_runs(results_dir):
        metrics_file = run_file.with_name("metrics.json")
        run = json.loads(run_file.read_text())
        result = RunResult(run_file.parent, run, json.loads(metrics_file.read_text()))
        runs.setdefault(str(run.get("task", "classification")), []).append(result)
    if not label:
        return runs
    repeated = []
    for task, found in runs.items():
        runs[task], left_out = label_experiments(found)
        repeated += left_out
    if repeated:
        print(f"archbench-compare: {len(repeated)} run(s) repeat the settings and seed of a newer run "
              f"and are left out (not independent replicates), or trained on an earlier version of its "
              f"files, e.g. {repeated[0].folder}", flush=True)
    return runs


def tuned_runs(tune_dir: Path) -> dict[str, list[RunResult]]:
    """Tune mode's retrained seeds (``results/tune/<pair>/seeds/seed<N>``), marked ``tuned`` and
    carrying their study's best parameters and budget."""
    found: dict[str, list[RunResult]] = {}
    for task, runs in collect(tune_dir, label=False).items():  # a study's trials and its seeds
        for run in runs:
            if run.folder.parent.name != "seeds":
                continue  # a trial of the study itself
            study = run.folder.parent.parent / "study" / "sweep.json"
            summary = json.loads(study.read_text()) if study.is_file() else {}
            run.run.update(tuned=True, best_params=summary.get("best_params", {}),
                           budget=f"{summary.get('trials', '?')} trials, {summary.get('trial_epochs', '?')} trial-epochs")
            found.setdefault(task, []).append(run)
    return found


def sweep_markdown(sweep_dir: Path) -> list[str]:
    """One row per finished sweep (``results/sweep/*/sweep.json``)."""
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


def write_report(results_dir: Path, reports_dir: Path, data_root: Path | None = None) -> int:
    """Write ``comparison.md`` (and each section's figures); returns the number of runs compared.

    With ``data_root`` (the prepared data, e.g. ``data/prepared``), classification and regression
    tables gain scikit-learn reference rows fitted on the same splits (``report/baselines.py``).
    """
    from archbench.report.replicates import aggregated
    from archbench.report.speech import audio_section
    from archbench.tasks import load_task, task_names

    reports_dir.mkdir(parents=True, exist_ok=True)
    runs, count = _runs_by_section(Path(results_dir), data_root)
    lines = ["# archbench comparison", "",
             "Every trained (dataset, model) pair, scored on its held-out test split; models were",
             "selected on the validation split only. Regenerate with `dvc repro` (stage `compare`).", ""]
    order = ["classification"] + [n for n in task_names() if n != "classification"]
    for name in order:
        if runs.get(name):
            # classification reads every seed's predictions; the other tables show seed means
            given = runs[name] if name == "classification" else aggregated(
                [r for r in runs[name] if not r.run.get("tuned")])
            lines += load_task(name).report_section(given, reports_dir)
    lines += audio_section(runs.get("classification", []), reports_dir)
    lines += sweep_markdown(Path(results_dir).parent / "sweep")
    lines += _linked_reports(reports_dir)
    (reports_dir / "comparison.md").write_text("\n".join(lines))
    return count


def _runs_by_section(results_dir: Path, data_root: Path | None) -> tuple[dict[str, list[RunResult]], int]:
    """Finished runs by the task whose section shows them, with reference and tuned rows added;
    and how many trained runs there are."""
    from archbench.report.baselines import reference_runs
    from archbench.tasks import load_task, task_names

    runs = collect(results_dir)
    count = sum(len(r) for r in runs.values())
    for task, references in reference_runs(runs, data_root).items():
        runs[task] = runs[task] + references
    for task, tuned in tuned_runs(results_dir.parent / "tune").items():
        runs[task] = runs.get(task, []) + tuned
    for name in list(runs):  # a task reported within another's section (autoencoders beside GANs)
        host = load_task(name).report_with if name in task_names() else None
        if host:
            runs[host] = runs.get(host, []) + runs.pop(name)
    return runs, count


def _linked_reports(reports_dir: Path) -> list[str]:
    """Sections that link the side pipelines' and benchmarks' reports that exist."""
    lines: list[str] = []
    if (reports_dir / "text" / "comparison.md").is_file():
        lines += ["## Text classification", "", "SST-2 sentiment by bag of embeddings, Kim CNN, "
                  "bidirectional LSTM and Transformer: [text/comparison.md](text/comparison.md) "
                  "(`make repro-text`, a second pipeline: it reads GLUE's files).", ""]
    if (reports_dir / "translation" / "comparison.md").is_file():
        lines += ["## Translation", "", "Multi30k de→en by a GRU encoder-decoder, Bahdanau attention and a "
                  "Transformer, BLEU of greedy and beam search: [translation/comparison.md]"
                  "(translation/comparison.md) (`make repro-translation`, a second pipeline: it reads "
                  "Multi30k's files).", ""]
    if (reports_dir / "efficiency.md").is_file():
        lines += ["## Data efficiency", "", "Accuracy against training-set share per architecture: "
                  "[efficiency.md](efficiency.md) (`make efficiency`, not part of `dvc repro`).", ""]
    return lines


def log_to_mlflow(reports_dir: Path, tracking_uri: str, experiment: str = "archbench-comparison") -> str:
    """The report and its figures as artifacts of one MLflow run (the UI shows the comparison too)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="comparison") as run:
        mlflow.log_artifact(str(reports_dir / "comparison.md"))
        for figure in sorted(reports_dir.glob("*.png")) + sorted((reports_dir / "figures").glob("*.png")):
            mlflow.log_artifact(str(figure), artifact_path="figures")
        return run.info.run_id
