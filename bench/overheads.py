"""Pipeline overheads: what a user waits for besides training itself.

  help         `archbench-train --help` (median of --repeats)
  first step   process start → first training batch of `archbench-train data=digits model=mlp`
               (the real CLI: imports, config, data, MLflow run, Trainer setup), median of --repeats
  to exit      command → exit of the same run at its recipe's budget, with and without MLflow model
               logging (the difference is what logging the model with its signature costs)
  imports      `import pytorch_lightning`, `import mlflow`, `import hydra` in a fresh interpreter
  no-op repro  `dvc repro` of an up-to-date pipeline, median of --repeats (skipped when the
               pipeline here is not up to date: run `dvc repro` first)
  cold repro   `dvc repro` of the default pipeline in a fresh clone of HEAD (same venv), with --cold

Writes reports/benchmarks/overheads.{json,md}.

    python bench/overheads.py [--repeats 3] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, REPORTS, ROOT, timed_train, venv_env, write_report

TARGETS = {"help": 3.0, "to_exit": 6.0, "noop_repro": 5.0, "cold_repro": 15 * 60.0}

# Run in a child process: the real CLI, with one observing callback appended to archbench's own.
FIRST_STEP_PROBE = """
import sys, time
import pytorch_lightning as pl
import archbench.train as train

class FirstStep(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0:
            print(f"FIRST_STEP {time.time():.6f}", flush=True)

build = train.build_callbacks
train.build_callbacks = lambda *args: (lambda c: ([*c[0], FirstStep()], c[1]))(build(*args))
from archbench.cli.train import main
sys.argv = ["archbench-train", *sys.argv[1:]]
main()
"""


def timed(command: list[str], cwd: Path, environ: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=environ or venv_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def first_step_seconds(work: Path) -> float:
    """Wall seconds from launching the CLI to the first training batch (digits, mlp, 1 epoch)."""
    environ = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    overrides = ["data=digits", "model=mlp", "trainer.max_epochs=1", "callbacks.progress_bar=none",
                 f"paths.output_root={work / 'outputs'}", f"paths.data_dir={work / 'prepared'}",
                 "logger.log_model=false"]
    started = time.time()
    result = subprocess.run([sys.executable, "-c", FIRST_STEP_PROBE, *overrides], cwd=ROOT, env=environ,
                            check=True, capture_output=True, text=True)
    stamp = next(line for line in result.stdout.splitlines() if line.startswith("FIRST_STEP"))
    return float(stamp.split()[1]) - started


def to_exit_seconds(work: Path, *overrides: str) -> float:
    """Wall seconds of `archbench-train data=digits model=mlp` (recipe budget, data prepared)."""
    return timed_train(["data=digits", "model=mlp", "callbacks.progress_bar=none",
                        f"paths.output_root={work / 'outputs'}", f"paths.data_dir={work / 'prepared'}",
                        *overrides], work / "mlflow.db")


def import_seconds(module: str) -> float:
    return timed([sys.executable, "-c", f"import {module}"], ROOT)


def pipeline_up_to_date() -> bool:
    out = subprocess.run([str(BIN / "dvc"), "status", "--quiet"], cwd=ROOT, env=venv_env(), capture_output=True)
    return out.returncode == 0


def cold_repro(work: Path) -> float:
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    environ = venv_env(ARCHBENCH_ROOT=str(clone))
    environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        return timed([str(BIN / "dvc"), "repro"], clone, environ)
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time a cold `dvc repro` in a fresh clone")
    args = parser.parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        help_s = [timed([str(BIN / "archbench-train"), "--help"], ROOT) for _ in range(args.repeats)]
        results["help"] = {"seconds": statistics.median(help_s), "runs": help_s}
        # the first run also prepares digits; the median is of runs with the data already there
        first = [first_step_seconds(work) for _ in range(args.repeats + 1)]
        results["first_step"] = {"seconds": statistics.median(first[1:]), "runs": first,
                                 "cold_data_seconds": first[0]}
        for key, overrides in (("to_exit", ()), ("to_exit_pickle", ("logger.model_format=pickle",)),
                               ("to_exit_no_model", ("logger.log_model=false",))):
            runs = [to_exit_seconds(work, *overrides) for _ in range(args.repeats)]
            results[key] = {"seconds": statistics.median(runs), "runs": runs}
        for module in ("pytorch_lightning", "mlflow", "hydra"):
            runs = [import_seconds(module) for _ in range(args.repeats)]
            results[f"import_{module}"] = {"seconds": statistics.median(runs), "runs": runs}
        if pipeline_up_to_date():
            noop = [timed([str(BIN / "dvc"), "repro"], ROOT) for _ in range(args.repeats)]
            results["noop_repro"] = {"seconds": statistics.median(noop), "runs": noop}
        else:
            results["noop_repro"] = {"skipped": "the pipeline here is not up to date: run `dvc repro` first"}
        if args.cold:
            results["cold_repro"] = {"seconds": cold_repro(work), "runs": 1}
    command = "python bench/overheads.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write(results, command.strip())
    return results


def write(results: dict, command: str) -> None:
    previous = {}
    if (REPORTS / "overheads.json").is_file():  # a run without --cold keeps the last cold figure
        previous = json.loads((REPORTS / "overheads.json").read_text()).get("results", {})
    if "cold_repro" not in results and "cold_repro" in previous:
        results["cold_repro"] = {**previous["cold_repro"], "from_earlier_run": True}
    labels = {"help": "`archbench-train --help`", "first_step": "process start → first training step "
              "(`archbench-train data=digits model=mlp`, data prepared)",
              "to_exit": "command → exit, same run at its recipe's budget, model logged with signature",
              "to_exit_pickle": "… the same, model logged as pickle (`logger.model_format=pickle`) instead "
                                "of MLflow's default pt2 (torch.export)",
              "to_exit_no_model": "… the same with `logger.log_model=false`",
              "import_pytorch_lightning": "`import pytorch_lightning` (fresh interpreter)",
              "import_mlflow": "`import mlflow`", "import_hydra": "`import hydra`",
              "noop_repro": "no-op `dvc repro`",
              "cold_repro": "cold `dvc repro` of the default pipeline (fresh clone, venv present)"}
    lines = ["# Pipeline overheads", "", f"`{command}` on this machine ({os.cpu_count()} CPUs); medians of the "
             "repeats.", "", "| what | seconds | target | met |", "| --- | ---: | ---: | --- |"]
    for key, label in labels.items():
        entry = results.get(key, {"skipped": "not measured (run with --cold)"})
        target = TARGETS.get(key)
        if "seconds" not in entry:
            lines.append(f"| {label} | — | {target or '—'} | {entry['skipped']} |")
            continue
        note = " (from an earlier run)" if entry.get("from_earlier_run") else ""
        met = "—" if target is None else ("yes" if entry["seconds"] <= target else "**no**")
        lines.append(f"| {label}{note} | {entry['seconds']:.1f} | {target if target else '—'} | {met} |")
    if "first_step" in results:
        lines += ["", f"The first first-step run, which also prepared the digits data, took "
                  f"{results['first_step']['cold_data_seconds']:.1f} s."]
    write_report("overheads", {"command": command, "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
