"""Where the seconds of one small training go: `archbench-train data=digits model=mlp` (data
prepared, its recipe's budget, model logged with its signature), split into phases by timing
wrappers put around archbench's own functions in a child process (the real CLI otherwise).

  imports      torch, Lightning, torchmetrics, MLflow, Hydra, archbench (imported first, so the
               later phases hold no import time)
  config       main() → train(): argument checks and Hydra's composition, recipe applied
  build        config checks, prepared data loaded, net / datamodule / LightningModule built
  mlflow run   store opened (schema checks on sqlite), experiment, run created, params logged
  trainer      pl.Trainer construction
  fit + test   training and the test pass (Trainer construction excluded)
  model log    the model exported and logged to MLflow with its signature
  registry     registration and champion promotion
  rest         interpreter start, the rest of train() and exit (as the console script exits):
               total minus the phases

`--before COMMIT` times that commit too (checked out into a temporary git worktree, removed
after), `--src DIR` another checkout's package (run in DIR/.. with that checkout's conf/): a
before/after on one machine, side by side in one run. run_all.py times 77f9106 beside this
checkout: the code before the start-up work of issue 16. Writes
reports/benchmarks/startup.{json,md}.

    python bench/startup.py [--repeats 3] [--before COMMIT ...] [--src DIR --label NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, venv_env, write_report

PROBE = r"""
import functools, importlib, json, sys, time
started = float(sys.argv[1])
spent = {}
t = time.time()
try:  # what the console script does first, where the version has it (archbench.gc_policy)
    from archbench.gc_policy import defer_collection
except ImportError:
    pass
else:
    defer_collection()
import torch, pytorch_lightning, torchmetrics, mlflow, hydra, archbench.train, archbench.cli.train
spent["imports"] = time.time() - t

def wrap(module, owner, name, phase):
    target = importlib.import_module(module)
    holder = getattr(target, owner) if owner else target
    original = getattr(holder, name)
    @functools.wraps(original)
    def timed(*args, **kwargs):
        begin = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[phase] = spent.get(phase, 0.0) + time.time() - begin
    setattr(holder, name, timed)

entered = {}
train = archbench.train.train
def mark_train(*args, **kwargs):
    entered.setdefault("train", time.time())
    return train(*args, **kwargs)
archbench.train.train = mark_train
wrap("archbench.config", None, "validate", "build")
wrap("archbench.train", None, "build", "build")
wrap("archbench.tracking.mlflow_run", None, "configure", "mlflow run")
wrap("archbench.train", None, "_tracked_fit", "tracked")
wrap("archbench.train", None, "_fit_and_test", "fit + test")
wrap("pytorch_lightning", "Trainer", "__init__", "trainer")
wrap("archbench.train", None, "_finish", "finish")
wrap("archbench.tasks.base", "Task", "export", "model log")
wrap("archbench.tracking.registry", None, "register_and_promote", "registry")
from archbench.cli.train import main
sys.argv = ["archbench-train", *sys.argv[2:]]
begun = time.time()

def timed_main():
    try:
        main()
    finally:
        spent["config"] = entered.get("train", begun) - begun
        print("PHASES " + json.dumps(spent), flush=True)

try:  # the console script's way out, where the version has one (archbench.cli.entry)
    from archbench.cli.entry import run
except ImportError:
    timed_main()
else:
    run(timed_main)
"""

PHASES = ("imports", "config", "build", "mlflow run", "trainer", "fit + test", "model log", "registry", "rest")


def one_run(src: Path | None, work: Path) -> dict[str, float]:
    """Phase seconds of one run (the probe's wrappers; ``rest`` = total minus the phases)."""
    environ = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    if src is not None:
        environ["PYTHONPATH"] = f"{src}{os.pathsep}{environ.get('PYTHONPATH', '')}"
    overrides = ["data=digits", "model=mlp", "callbacks.progress_bar=none",
                 f"paths.output_root={work / 'outputs'}", f"paths.data_dir={work / 'prepared'}"]
    root = src.parent if src is not None and (src.parent / "conf" / "config.yaml").is_file() else ROOT
    started = time.time()  # each version runs in its own checkout, so it composes its own conf/
    result = subprocess.run([sys.executable, "-c", PROBE, f"{started:.6f}", *overrides], cwd=root, env=environ,
                            capture_output=True, text=True)
    total = time.time() - started
    line = next((x for x in result.stdout.splitlines() if x.startswith("PHASES ")), None)
    if result.returncode or line is None:
        raise SystemExit(f"probe failed ({result.returncode}):\n{result.stderr[-3000:]}")
    spent = json.loads(line.split(" ", 1)[1])
    phases = {"imports": spent["imports"], "config": spent["config"], "build": spent.get("build", 0.0),
              "mlflow run": spent["tracked"] - spent["fit + test"] - spent["finish"],
              "trainer": spent.get("trainer", 0.0), "fit + test": spent["fit + test"] - spent.get("trainer", 0.0),
              "model log": spent.get("model log", 0.0), "registry": spent.get("registry", 0.0)}
    phases["mlflow run"] += spent["finish"] - phases["model log"] - phases["registry"]  # metrics, run end
    phases["rest"] = total - sum(phases.values())
    return {**phases, "total": total}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", action="append", default=[], help="a commit to time too (a git worktree)")
    parser.add_argument("--src", type=Path, action="append", default=[], help="another checkout's src/")
    parser.add_argument("--label", action="append", default=[], help="a name for each --src")
    args = parser.parse_args(argv)
    labels = args.label or [str(s) for s in args.src]
    if len(labels) != len(args.src):
        parser.error("give one --label per --src, or none")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        befores = [(commit, stack.enter_context(worktree(commit, Path(tmp) / f"at-{commit}")) / "src")
                   for commit in args.before]
        versions = [*befores, *zip(labels, args.src, strict=True), ("this checkout", None)]
        results = time_versions(versions, args.repeats, Path(tmp))
    command = "python bench/startup.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_report("startup", {"command": command.strip(), "results": results},
                 markdown(results, command.strip(), args.repeats))
    return results


@contextlib.contextmanager
def worktree(commit: str, where: Path):
    """``commit`` checked out at ``where`` (a detached git worktree of this repository), removed after."""
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", "--quiet", str(where), commit], check=True)
    try:
        yield where
    finally:
        subprocess.run([*git, "remove", "--force", str(where)], check=True)


def time_versions(versions: list[tuple[str, Path | None]], repeats: int, tmp: Path) -> dict[str, dict]:
    """Each version's phase seconds (runs interleaved, so each sees the same machine) and medians."""
    for index, (_, src) in enumerate(versions):  # a first run each (prepares digits, creates the
        one_run(src, tmp / f"v{index}")             # store): not counted
    results: dict[str, dict] = {}
    for _ in range(repeats):
        for index, (label, src) in enumerate(versions):
            results.setdefault(label, {"runs": []})["runs"].append(one_run(src, tmp / f"v{index}"))
    for entry in results.values():
        entry["median"] = {k: statistics.median(r[k] for r in entry["runs"]) for k in (*PHASES, "total")}
    return results


def markdown(results: dict[str, dict], command: str, repeats: int) -> str:
    labels = list(results)
    lines = ["# Start-up and bookkeeping of one small training", "",
             f"`{command}` on this machine ({os.cpu_count()} CPUs): `archbench-train data=digits "
             "model=mlp` (data prepared, recipe budget, model logged with its signature), medians of "
             f"{repeats} interleaved runs per version, seconds. Target: total ≤ 6 s.", "",
             "| phase | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    for key in (*PHASES, "total"):
        cells = " | ".join(f"{results[label]['median'][key]:.2f}" for label in labels)
        lines.append(f"| {'**total**' if key == 'total' else key} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
