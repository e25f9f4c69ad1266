"""Pipeline overheads: what a user waits for besides training itself.

  help         `archbench-train --help` (median of --repeats)
  first step   process start → first training batch of `archbench-train data=digits model=mlp`
               (the real CLI: imports, config, data, MLflow run, Trainer setup), median of --repeats
  to exit      command → exit of the same run at its recipe's budget, with and without MLflow model
               logging (the difference is what logging the model with its signature costs)
  imports      `import pytorch_lightning`, `import mlflow`, `import hydra` in a fresh interpreter
  no-op repro  `dvc repro` of an up-to-date pipeline, median of --repeats (skipped when the
               pipeline here is not up to date: run `dvc repro` first)
  cold repro   `make repro` in a fresh clone of HEAD with a new venv (setup included: the README's
               command on a fresh machine, pip's cache aside), with --cold; each output line is
               timestamped, so the report splits it into setup and each stage kind (prepare,
               classify, train, language_model, generative, sweep, compare)

Writes reports/benchmarks/overheads.{json,md}.

    python bench/overheads.py [--repeats 3] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    """Whether the default pipeline (dvc.yaml, what `dvc repro` runs) is up to date; the side
    pipelines (text/, vision/, ...) are not part of it."""
    status = [str(BIN / "dvc"), "status", "--quiet", "dvc.yaml"]
    out = subprocess.run(status, cwd=ROOT, env=venv_env(), capture_output=True)
    return out.returncode == 0


STAGE_LINE = re.compile(r"Running stage '([^'@]+)(?:@[^']*)?'")


def stage_seconds(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per stage kind from timestamped `make repro` output: from each "Running stage" line
    to the next one (the last stage runs to the end); ``setup``: before the first stage."""
    starts = [(t, m.group(1)) for t, text in lines if (m := STAGE_LINE.search(text))]
    spent = {"setup": starts[0][0] if starts else total}
    for (t, kind), (t_next, _) in zip(starts, [*starts[1:], (total, "")], strict=True):
        spent[kind] = spent.get(kind, 0.0) + t_next - t
    return spent


def cold_repro(work: Path) -> dict:
    """`make repro` in a fresh clone with its own new venv, PATH without this one's."""
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    environ["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(str(ROOT)))
    lines: list[tuple[float, str]] = []
    started = time.perf_counter()
    try:
        with subprocess.Popen(["make", "repro"], cwd=clone, env=environ, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as make:
            for line in make.stdout:
                lines.append((time.perf_counter() - started, line.rstrip()))
        total = time.perf_counter() - started
        if make.returncode:
            raise SystemExit("make repro failed in the fresh clone:\n" + "\n".join(t for _, t in lines[-30:]))
        return {"seconds": total, "runs": 1, "by_kind": stage_seconds(lines, total)}
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
            results["cold_repro"] = cold_repro(work)
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
              "cold_repro": "cold `make repro` of the default pipeline (fresh clone, new venv: setup "
                            "included)"}
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
    by_kind = results.get("cold_repro", {}).get("by_kind")
    if by_kind:
        note = " (from an earlier run)" if results["cold_repro"].get("from_earlier_run") else ""
        lines += ["", f"Where the cold `make repro`{note} went, seconds (each stage from its \"Running "
                  "stage\" line to the next; setup: venv and installs before the first stage):", "",
                  "| part | seconds | share |", "| --- | ---: | ---: |"]
        total = results["cold_repro"]["seconds"]
        for kind, seconds in sorted(by_kind.items(), key=lambda item: -item[1]):
            lines.append(f"| {kind} | {seconds:.0f} | {100 * seconds / total:.0f} % |")
    write_report("overheads", {"command": command, "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
