"""Sweep efficiency: the same Optuna study (TPE, same seed, same trial count) with hyperband
pruning and without, side by side. Writes reports/benchmarks/sweep_efficiency.{json,md}.

    python bench/sweep_efficiency.py [--trials 12] [--epochs 20] [--data mnist1d] [--model cnn]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, ROOT, venv_env, write_report


def run(pruner: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / pruner
    command = [
        str(BIN / "archbench-train"), "-m", "hparams_search=lr_wd", f"data={args.data}", f"model={args.model}",
        f"trainer.max_epochs={args.epochs}", f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.pruner.name={pruner}", f"hydra.sweeper.storage=sqlite:///{out / 'optuna.db'}",
        f"hydra.sweep.dir={out / 'sweep'}", "hydra.sweeper.register=false", "logger.log_model=false",
        f"paths.output_root={out}",
    ]
    env = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{out / 'mlflow.db'}")
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = json.loads((out / "sweep" / "sweep.json").read_text())
    return {"pruner": pruner, "seconds": round(seconds, 1), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", default="mnist1d")
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(pruner, args, Path(tmp)) for pruner in ("none", "hyperband")]
    record = {"command": " ".join(sys.argv), "trials": args.trials, "epochs": args.epochs,
              "data": args.data, "model": args.model, "results": results}
    none, hyper = results
    lines = [
        "# Sweep efficiency: hyperband pruning vs none",
        "",
        f"`python bench/sweep_efficiency.py --trials {args.trials} --epochs {args.epochs} "
        f"--data {args.data} --model {args.model}`: the same TPE study (seed 42, "
        f"{args.trials} trials over optimizer.lr and optimizer.weight_decay, at most {args.epochs} epochs "
        "each), objective best val/acc; both sweeps ran one after the other on this machine.",
        "",
        "| pruner | trials complete | pruned | failed | trial-epochs | best val/acc | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['pruner']} | {r['complete']} | {r['pruned']} | {r['fail']} | {r['trial_epochs']} | "
                     f"{100 * r['best_value']:.2f} % | {r['seconds']:.0f} |")
    lines += ["", f"Hyperband spent {hyper['trial_epochs'] / none['trial_epochs']:.2f}× the trial-epochs "
              f"and {hyper['seconds'] / none['seconds']:.2f}× the wall time of the unpruned sweep; best "
              f"val/acc {100 * hyper['best_value']:.2f} % vs {100 * none['best_value']:.2f} %.", ""]
    write_report("sweep_efficiency", record, "\n".join(lines))


if __name__ == "__main__":
    main()
