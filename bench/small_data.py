"""Small-data protocol study: can breast_cancer's validation split choose the perceptron's and the
MLP's hyperparameters? Cross-validates a grid over the training pool (train + val, 5 stratified folds
as the validation split: data.val_fold; the test split is never used to choose) and shows the
choice next to the default recipe, with the test accuracy of each fold's tested checkpoint for
information only. The perceptron (averaged, callbacks.checkpoint.select=last) is scored at its last
epoch, the MLP at its best one.

    python bench/small_data.py            # ≈ 5 min here -> reports/benchmarks/small_data.{md,json}
    python bench/small_data.py --wide     # the MLP over 36 points (≈ 15 min) -> small_data_wide.{md,json}
    python bench/small_data.py --nested   # the same 36 points scored on held-out folds (≈ 15 min)

--nested scores each point without the bias of choosing on what it scores: bench/refit_protocol.py's nested
folds (2 partitions of the pool × 5 held-out folds × 3 seeds); each run early-stops on 10 % of its fold's
rest, as the pipeline does, and is scored on the held-out fold. The wide report's test column rides along.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from common import REPORTS, timed_train, write_report
from refit_protocol import FOLDS, train_nested

GRIDS = {
    "mlp": ["model.net.hidden=[32],[128]", "model.net.dropout=0.2,0.5", "optimizer.weight_decay=1e-3,1e-2"],
    "perceptron": ["trainer.max_epochs=30,100,200", "data.batch_size=8,32"],
}
# a wider MLP grid: smaller nets, a lower learning rate and weight decay up to 0.1
WIDE_GRIDS = {"mlp": ["model.net.hidden=[16],[32],[128]", "model.net.dropout=0.2,0.5",
                      "optimizer.weight_decay=1e-3,1e-2,1e-1", "optimizer.lr=1e-3,3e-3"]}
# the base MLP grid with and without a linear map of the input added to the scores (Wide & Deep)
SKIP_GRIDS = {"mlp": [*GRIDS["mlp"], "model.net.linear_skip=false,true"]}
# each grid option: (its grids, its report's name)
GRID_OPTIONS = {"": (GRIDS, "small_data"), "--wide": (WIDE_GRIDS, "small_data_wide"),
                "--linear-skip": (SKIP_GRIDS, "small_data_linear_skip")}
RECIPE = {"mlp": "model.net.hidden=[128] model.net.dropout=0.2 optimizer.lr=0.001 optimizer.weight_decay=0.01",
          "perceptron": "trainer.max_epochs=100 data.batch_size=32 (averaged, tested at the last epoch)"}
VARIED = ("optimizer.", "data.batch_size", "model.net.", "trainer.max_epochs")


def run_grid(model: str, folds: int, sweep_dir: Path, store: Path, grid: list[str]) -> float:
    """Every grid point on every fold, one process (Hydra multirun); returns its seconds."""
    return timed_train(["-m", "data=breast_cancer", f"model={model}",
                        f"data.val_fold={','.join(map(str, range(folds)))}", f"data.cv_folds={folds}",
                        *grid, "callbacks.progress_bar=none", "logger.log_model=false",
                        "logger.experiment_name=archbench-small-data", f"hydra.sweep.dir={sweep_dir}",
                        f"paths.data_dir={store.parent / 'prepared'}"],  # variants stay out of data/prepared
                       store)


def run_nested(model: str, scratch: Path, grid: list[str], partitions: int = 2) -> float:
    """Every grid point on every (partition, held-out fold, seed), one 1-thread process per partition."""
    folds = ",".join(map(str, range(FOLDS)))

    def one(partition: int) -> float:
        return train_nested([f"+data.fold_seed={partition}", f"+data.outer_fold={folds}", "+data.refit=false",
                             "seed=42,43,44", *grid, f"hydra.sweep.dir={scratch / f'nested{partition}'}"],
                            scratch / f"mlflow{partition}.db", threads=1, multirun=True, model=model,
                            experiment="archbench-small-data")

    with ThreadPoolExecutor(partitions) as workers:  # 2 processes of 1 thread on 2 cores
        return max(workers.map(one, range(partitions)))


def summarise_nested(scratch: Path, informative: dict[str, float]) -> list[dict]:
    """Per grid point: mean held-out accuracy and loss over its runs; ``informative``: the wide
    report's test accuracy of the same config (chosen nothing)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for metrics in scratch.glob("nested*/*/metrics.json"):
        overrides = yaml.safe_load((metrics.parent / ".hydra/overrides.yaml").read_text())
        key = " ".join(sorted(o for o in overrides if o.startswith(VARIED)))
        result = json.loads(metrics.read_text())
        points.setdefault(key, []).append((result["test/acc"], result["test/loss"]))
    rows = [{"config": key, "runs": len(v), "held_out_acc": statistics.mean(x[0] for x in v),
             "held_out_loss": statistics.mean(x[1] for x in v), "test_acc": informative.get(key)}
            for key, v in points.items()]
    return sorted(rows, key=lambda r: (-round(r["held_out_acc"], 6), r["held_out_loss"]))


def nested_markdown(result: dict) -> str:
    lines = ["# Small data, nested: the breast_cancer MLP's 36-point grid scored on held-out folds", "",
             "Each point trained on 2 partitions of the training pool (455 examples) × 5 held-out folds × 3 seeds "
             "(30 runs), early-stopped on 10 % of the fold's rest as the pipeline does, and scored on the held-out "
             "fold, which chose nothing (unlike `--wide`, whose score is the split it early-stops on). Ranked by "
             "mean held-out accuracy, ties broken by held-out loss. The test column is `--wide`'s "
             f"(reports/benchmarks/small_data_wide.json), for information. `python bench/small_data.py --nested`, "
             f"{result['seconds']:.0f} s.", "", f"Default recipe: `{RECIPE['mlp']}`.", "",
             "| rank | config | held-out acc % | held-out loss | test acc % (info) |", "| ---: | --- | ---: | ---: | ---: |"]
    for rank, row in enumerate(result["rows"], 1):
        test = "–" if row["test_acc"] is None else f"{100 * row['test_acc']:.2f}"
        lines.append(f"| {rank} | `{row['config']}` | {100 * row['held_out_acc']:.2f} | "
                     f"{row['held_out_loss']:.4f} | {test} |")
    return "\n".join(lines)


def summarise(sweep_dir: Path) -> list[dict]:
    """Per grid point: mean over folds of the tested epoch's validation accuracy and loss (the best
    epoch's, or the last one's under ``callbacks.checkpoint.select=last``) and test acc."""
    points: dict[str, list[tuple[float, float, float]]] = {}
    for metrics in sweep_dir.glob("*/metrics.json"):
        overrides = yaml.safe_load((metrics.parent / ".hydra/overrides.yaml").read_text())
        key = " ".join(sorted(o for o in overrides if o.startswith(VARIED)))
        config = yaml.safe_load((metrics.parent / "config.yaml").read_text())  # as the run composed it
        curves = [r for r in csv.DictReader((metrics.parent / "curves.csv").open()) if r.get("val/loss")]
        if config["callbacks"]["checkpoint"].get("select") == "last":
            acc, loss = float(curves[-1]["val/acc"]), float(curves[-1]["val/loss"])
        else:
            acc, loss = max(float(r["val/acc"]) for r in curves), min(float(r["val/loss"]) for r in curves)
        points.setdefault(key, []).append((acc, loss, json.loads(metrics.read_text())["test/acc"]))
    rows = [{"config": key, "folds": len(v), "cv_val_acc": sum(x[0] for x in v) / len(v),
             "cv_val_loss": sum(x[1] for x in v) / len(v), "test_acc": sum(x[2] for x in v) / len(v)}
            for key, v in points.items()]
    # the protocol's own rule: accuracy first, ties broken by loss
    return sorted(rows, key=lambda r: (-round(r["cv_val_acc"], 6), r["cv_val_loss"]))


def markdown(results: dict, command: str) -> str:
    lines = ["# Small data: choosing hyperparameters on breast_cancer", "",
             "Each grid point trained on every fold of a 5-fold stratified split of the training pool",
             "(train + val, 455 examples; `data.val_fold=k`), selected on its fold's validation examples",
             "(91 each instead of the default split's 46). Ranked by the protocol's rule: mean validation",
             "accuracy of the tested epoch (the MLP's best, the averaged perceptron's last), ties broken by",
             "its mean validation loss. The test column (mean over the folds' runs) is shown for",
             f"information; it chose nothing. `{command}`.", ""]
    for model, result in results.items():
        lines += [f"## {model} ({result['seconds']:.0f} s)", "",
                  f"Default recipe: `{RECIPE[model]}`.", "",
                  "| rank | config | CV val acc % | CV val loss | test acc % (info) |",
                  "| ---: | --- | ---: | ---: | ---: |"]
        for rank, row in enumerate(result["rows"], 1):
            lines.append(f"| {rank} | `{row['config']}` | {100 * row['cv_val_acc']:.2f} | "
                         f"{row['cv_val_loss']:.4f} | {100 * row['test_acc']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--models", nargs="*", choices=list(GRIDS), help="default: every model of the grid")
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--wide", action="store_true", help="the wider MLP grid (WIDE_GRIDS)")
    grid.add_argument("--linear-skip", action="store_true", help="the MLP grid × model.net.linear_skip (SKIP_GRIDS)")
    grid.add_argument("--nested", action="store_true", help="the wider MLP grid, scored on held-out folds")
    args = parser.parse_args()
    if args.nested:
        wide = json.loads((REPORTS / "small_data_wide.json").read_text())["mlp"]["rows"]
        with tempfile.TemporaryDirectory() as scratch:
            seconds = run_nested("mlp", Path(scratch), WIDE_GRIDS["mlp"])
            result = {"seconds": seconds, "rows": summarise_nested(Path(scratch), {r["config"]: r["test_acc"] for r in wide})}
        write_report("small_data_nested", {"mlp": result}, nested_markdown(result))
        return
    option = "--wide" if args.wide else "--linear-skip" if args.linear_skip else ""
    grids, report = GRID_OPTIONS[option]
    models = [m for m in args.models or list(grids) if m in grids]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in models:
            sweep_dir = Path(scratch) / model
            seconds = run_grid(model, args.folds, sweep_dir, Path(scratch) / "mlflow.db", grids[model])
            results[model] = {"seconds": seconds, "rows": summarise(sweep_dir)}
    write_report(report, results, markdown(results, f"python bench/small_data.py {option}".strip()))


if __name__ == "__main__":
    main()
