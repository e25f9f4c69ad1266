"""Refit study: does retraining on train + val for the early-stopped epoch count (Goodfellow et al.,
Deep Learning, algorithm 7.2) beat testing the early-stopped checkpoint, for breast_cancer's MLP?

Nested cross-validation of the training pool only (train + val, 455 examples; the test split is never
read), cut into 5 stratified folds in each of ``--partitions`` ways (4): each fold is held out in turn,
and the other 364 examples are split as the pipeline splits its pool (10 % validation, seeded). Per
(partition, fold, seed):
  - early-stopped: the recipe as the pipeline runs it (best validation epoch E tested);
  - refit: the same recipe retrained on all 364 examples for E + 1 epochs, on the recipe's own
    learning-rate schedule (cut there, not compressed), last epoch tested.
scikit-learn's LogisticRegression on the same folds is the reference.

    python bench/refit_protocol.py     # ≈ 4.5 min here -> reports/benchmarks/refit_protocol.{md,json}
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import timed_train, write_report

FOLDS, SPLIT = 5, {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}
MODEL = "mlp"
# archbench-train's data and environment for these folds
NESTED_DATA = ["data=breast_cancer", "data.source=refit_protocol.nested_source"]
NESTED_ENV = {"PYTHONPATH": str(Path(__file__).parent)}  # so archbench-train imports this module


@functools.lru_cache(maxsize=8)
def _pool_folds(fold_seed: int) -> tuple[Any, np.ndarray, np.ndarray, list]:
    """breast_cancer's source, its training pool as the pipeline carves it, and the outer folds of
    partition ``fold_seed``."""
    from sklearn.model_selection import StratifiedKFold

    from archbench.data.prepare import split_pool
    from archbench.data.sources.sklearn_tables import breast_cancer

    source = breast_cancer({})
    splits = split_pool(SPLIT, source, SPLIT["seed"])  # its test split is dropped here, unread
    x = np.concatenate([splits["train"][0], splits["val"][0]])
    y = np.concatenate([splits["train"][1], splits["val"][1]])
    return source, x, y, list(StratifiedKFold(FOLDS, shuffle=True, random_state=fold_seed).split(x, y))


def nested_source(cfg: dict[str, Any]):
    """``data.source`` of this study: pool minus ``outer_fold`` to learn from, the fold as test; with
    ``refit`` the validation examples are also in training (``Source.x_val`` duplicates them)."""
    from dataclasses import replace

    from archbench.data.prepare import split_pool
    from archbench.data.sources import Source

    source, x, y, folds = _pool_folds(int(cfg["fold_seed"]))
    rest, held = folds[int(cfg["outer_fold"])]
    nested = Source(x[rest], y[rest], x[held], y[held], source.kind, source.input_shape, source.class_names,
                    {**source.info, "fold_seed": int(cfg["fold_seed"]), "outer_fold": int(cfg["outer_fold"])})
    if not cfg["refit"]:
        return nested
    val_x, val_y = split_pool(SPLIT, nested, SPLIT["seed"])["val"]  # the early-stopped run's validation
    return replace(nested, x_val=val_x, y_val=val_y)


def train_nested(args: list[str], store: Path, threads: int, multirun: bool = False, model: str = MODEL,
                 experiment: str = "archbench-refit-protocol") -> float:
    """``archbench-train`` on these folds (``data.source`` this module), tracked in ``store``, its
    prepared data beside it; seconds to exit (bench/small_data.py --nested trains through it too)."""
    return timed_train([*(["-m"] if multirun else []), *NESTED_DATA, f"model={model}", f"threads={threads}",
                        "callbacks.progress_bar=none", "logger.log_model=false", f"logger.experiment_name={experiment}",
                        f"paths.data_dir={store.parent / 'prepared'}", *args], store, **NESTED_ENV)


def _steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches of an epoch as archbench's loader cuts them (a lone last example is dropped)."""
    return examples // batch_size + (1 if examples % batch_size > 1 else 0)


def run(seeds: list[int], partitions: list[int], scratch: Path) -> list[dict]:
    """Both arms on every (partition, fold, seed); one row each."""
    import torch
    import yaml

    store = scratch / "mlflow.db"
    train_nested([f"+data.fold_seed={','.join(map(str, partitions))}", f"+data.outer_fold={','.join(map(str, range(FOLDS)))}",
            "+data.refit=false", f"seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={scratch / 'early'}"],
           store, threads=2, multirun=True)
    rows = []
    for run_dir in sorted((scratch / "early").glob("*_*")):
        overrides = dict(o.lstrip("+").split("=", 1) for o in yaml.safe_load((run_dir / ".hydra/overrides.yaml").read_text()))
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        best = json.loads((run_dir / "run.json").read_text())["best_checkpoint"]
        rows.append({"partition": int(overrides["data.fold_seed"]), "fold": int(overrides["data.outer_fold"]),
                     "seed": int(overrides["seed"]), "batch_size": int(config["data"]["batch_size"]),
                     "best_epoch": int(torch.load(best, map_location="cpu", weights_only=True)["epoch"]),
                     "early_stopped_acc": json.loads((run_dir / "metrics.json").read_text())["test/acc"]})

    def refit(row: dict) -> float:
        out = scratch / f"refit/{row['partition']}-{row['fold']}-{row['seed']}"
        learn_from = len(_pool_folds(row["partition"])[3][row["fold"]][0])  # the fold's rest: train + val
        steps = (row["best_epoch"] + 1) * _steps_per_epoch(learn_from, row["batch_size"])
        train_nested([f"+data.fold_seed={row['partition']}", f"+data.outer_fold={row['fold']}", "+data.refit=true",
                f"seed={row['seed']}", "callbacks.early_stopping.enabled=false", "callbacks.checkpoint.select=last",
                f"+trainer.max_steps={steps}", f"hydra.run.dir={out}"], store, threads=1)
        return json.loads((out / "metrics.json").read_text())["test/acc"]

    with ThreadPoolExecutor(2) as workers:  # 2 processes of 1 thread on 2 cores
        for row, acc in zip(rows, workers.map(refit, rows), strict=True):
            row["refit_acc"] = acc
    return rows


def logistic_reference(partitions: list[int]) -> dict[int, list[float]]:
    """scikit-learn's LogisticRegression (standardised on the fold's rest) accuracy per outer fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    scores = {}
    for partition in partitions:
        _, x, y, folds = _pool_folds(partition)
        scores[partition] = [float(model.fit(x[rest], y[rest]).score(x[held], y[held])) for rest, held in folds]
    return scores


def markdown(rows: list[dict], reference: dict[int, list[float]], seconds: float) -> str:
    from archbench.report.stats import seed_ci

    early = statistics.mean(r["early_stopped_acc"] for r in rows)
    refit = statistics.mean(r["refit_acc"] for r in rows)
    low, high = seed_ci([r["refit_acc"] - r["early_stopped_acc"] for r in rows])  # runs resampled
    wins = sum(r["refit_acc"] > r["early_stopped_acc"] for r in rows)
    losses = sum(r["refit_acc"] < r["early_stopped_acc"] for r in rows)
    logistic = statistics.mean(v for scores in reference.values() for v in scores)
    lines = ["# Refit on train + val: breast_cancer MLP, nested cross-validation", "",
             f"{len(reference)} partitions of the training pool (455 examples; the test split is never read) into "
             f"{FOLDS} stratified folds, each held out in turn, × seeds {sorted({r['seed'] for r in rows})}: "
             f"{len(rows)} paired runs, {seconds:.0f} s. Early-stopped: the recipe as the pipeline runs it "
             "(validation: 10 % of the fold's rest), best validation epoch tested. Refit: retrained on the "
             "fold's whole rest for that epoch count on the recipe's schedule, last epoch tested. "
             "`python bench/refit_protocol.py`.", "",
             f"**Mean held-out accuracy: early-stopped {100 * early:.2f} %, refit {100 * refit:.2f} %; "
             f"refit − early-stopped {100 * (refit - early):+.2f} points, 95 % paired bootstrap interval "
             f"[{100 * low:+.2f}, {100 * high:+.2f}]; refit higher in {wins}, lower in {losses} of {len(rows)} runs.** "
             f"LogisticRegression on the same folds: {100 * logistic:.2f} %.", "",
             "<details><summary>Every run</summary>", "",
             "| partition | fold | seed | best epoch | early-stopped % | refit % | LogisticRegression % |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: (r["partition"], r["fold"], r["seed"])):
        lines.append(f"| {r['partition']} | {r['fold']} | {r['seed']} | {r['best_epoch']} | "
                     f"{100 * r['early_stopped_acc']:.2f} | {100 * r['refit_acc']:.2f} | "
                     f"{100 * reference[r['partition']][r['fold']]:.2f} |")
    return "\n".join([*lines, "", "</details>"])


def main() -> None:
    import time

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--partitions", type=int, default=4, help="fold partitions (seeds 0..N-1 of the split)")
    args = parser.parse_args()
    partitions = list(range(args.partitions))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        rows = run(args.seeds, partitions, Path(scratch))
    seconds = time.perf_counter() - started
    reference = logistic_reference(partitions)
    write_report("refit_protocol", {"rows": rows, "logistic_reference": reference, "seconds": seconds},
                 markdown(rows, reference, seconds))


if __name__ == "__main__":
    main()
