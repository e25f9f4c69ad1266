"""Seed replicates' cost: wall time of 3 seeds of a pair (as the pipeline runs them: params.yaml's
overrides, e.g. 3 joblib workers of 1 torch thread) against 1 seed alone (basic launcher, torch's
default threads), for every default mnist1d and digits classifier, side by side in one run.

    python bench/replicas.py [--datasets mnist1d digits]   # -> reports/benchmarks/replicas.{md,json}
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import yaml
from common import ROOT, timed_train, write_report

TARGET_RATIO = 2.0
LAUNCHER = re.compile(r"(hydra/launcher=\S+|hydra\.launcher\.\S+|threads=\S+)")


def timed_run(data: str, model: str, seeds: str, overrides: str, scratch: Path) -> float:
    """Seconds from command to exit of one pair's seed multirun (``replicas=seeds``)."""
    sweep_dir = scratch / f"{data}-{model}-{len(seeds.split(','))}seeds"
    return timed_train(["-m", "replicas=seeds", f"data={data}", f"model={model}", f"seed={seeds}",
                        *overrides.split(), "logger.log_model=false", f"hydra.sweep.dir={sweep_dir}"],
                       scratch / "mlflow.db")


def markdown(rows: list[dict], totals: dict) -> str:
    lines = ["# Seed replicates: 3 seeds against 1", "",
             "Wall seconds, command to exit, per default pair: one seed alone (basic launcher, torch's",
             "default threads) and three seeds as `dvc repro` runs them (the pair's `overrides` in",
             f"params.yaml). Target: 3 seeds ≤ {TARGET_RATIO:.0f}× one seed over all pairs together.",
             "`python bench/replicas.py`.", "",
             "| pair | how 3 seeds run | 1 seed s | 3 seeds s | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['pair']} | {r['how'] or 'one after another, 1 process'} | {r['one']:.1f} | "
                     f"{r['three']:.1f} | {r['three'] / r['one']:.2f}× |")
    met = "met" if totals["ratio"] <= TARGET_RATIO else "**not met**"
    lines += [f"| **all** | | {totals['one']:.1f} | {totals['three']:.1f} | {totals['ratio']:.2f}× ({met}) |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["mnist1d", "digits"])
    args = parser.parse_args()
    pairs = yaml.safe_load((ROOT / "params.yaml").read_text())["classify"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for key, item in pairs.items():
            if item["data"] not in args.datasets:
                continue
            overrides = item.get("overrides", "")
            solo = " ".join(LAUNCHER.sub("", overrides).split())  # one seed: no side-by-side workers
            one = timed_run(item["data"], item["model"], "42", solo, Path(scratch))
            three = timed_run(item["data"], item["model"], "42,43,44", overrides, Path(scratch))
            rows.append({"pair": key, "how": " ".join(LAUNCHER.findall(overrides)), "one": one, "three": three})
            print(f"{key}: {one:.1f} s, {three:.1f} s", flush=True)
    one, three = sum(r["one"] for r in rows), sum(r["three"] for r in rows)
    totals = {"one": one, "three": three, "ratio": three / one if one else float("nan")}
    write_report("replicas", {"rows": rows, "totals": totals, "target_ratio": TARGET_RATIO},
                 markdown(rows, totals))


if __name__ == "__main__":
    main()
