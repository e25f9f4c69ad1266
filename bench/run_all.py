"""Regenerate every benchmark report in reports/benchmarks/, one after the other (never in
parallel: each timing is taken on a quiet machine).

  1. `dvc repro`                      brings the default pipeline up to date (published.py reads it)
  2. bench/throughput.py              Trainer path vs hand-written loops
     bench/memory_format.py           channels-last conv weights vs the default layout
     bench/optimizer_step.py          the compiled optimizer update vs torch's eager ones (SST-2 cnn)
  3. bench/published.py               results beside the published references
  4. bench/sweep_efficiency.py        Optuna with and without pruning
  5. bench/overheads.py               --help, first step, no-op and (with --cold) cold `dvc repro`
     bench/startup.py                 one small training's seconds split into phases
  6. bench/replicas.py                3 seeds of each mnist1d/digits classifier against 1 seed
  7. bench/small_data.py              cross-validated hyperparameters on breast_cancer (not a timing),
                                      and its --linear-skip grid (--wide, --nested: by hand, 11 and 15 min)
     bench/refit_protocol.py          early-stopped checkpoint vs refit on train + val (nested CV)
  8. bench/export.py                  latency per example, PyTorch vs onnxruntime (archbench-export's file)

    python bench/run_all.py [--cold] [--skip throughput published ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import BIN, REPORTS, ROOT, venv_env

STEPS = {
    "repro": [str(BIN / "dvc"), "repro"],
    # the sub-2-ms MLP steps get 600 steps x 11 repeats: their targets are differences of a few %
    "throughput": [sys.executable, "bench/throughput.py", "--steps", "300", "--repeats", "5", "--cases",
                   "mnist1d:mlp:600:11", "mnist1d:cnn", "mnist1d:lstm", "mnist:mlp:600:11", "mnist:cnn"],
    "memory_format": [sys.executable, "bench/memory_format.py"],
    "optimizer_step": [sys.executable, "bench/optimizer_step.py", "--steps", "300", "--repeats", "3"],
    "published": [sys.executable, "bench/published.py"],
    "sweep_efficiency": [sys.executable, "bench/sweep_efficiency.py", "--trials", "12", "--epochs", "20"],
    "overheads": [sys.executable, "bench/overheads.py", "--repeats", "3"],
    "startup": [sys.executable, "bench/startup.py", "--repeats", "3", "--before", "77f9106"],
    "replicas": [sys.executable, "bench/replicas.py"],
    "small_data": [sys.executable, "bench/small_data.py"],
    "small_data_linear_skip": [sys.executable, "bench/small_data.py", "--linear-skip"],
    "refit_protocol": [sys.executable, "bench/refit_protocol.py"],
    "export": [sys.executable, "bench/export.py", "--repeats", "30"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also time a cold `dvc repro` in a fresh clone")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(STEPS))
    args = parser.parse_args()
    for name, command in STEPS.items():
        if name in args.skip:
            continue
        if name == "overheads" and args.cold:
            command = [*command, "--cold"]
        print(f"== {name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=venv_env(), check=True)
        print(f"== {name} done in {time.perf_counter() - started:.0f} s", flush=True)
    print("reports in", REPORTS)


if __name__ == "__main__":
    main()
