"""``archbench-trial BASE.json [MORE.json …] --vs TRIAL.json […] [--metric M]``: is a recipe change real?

Each arm is one or more replica summaries, the ``<sweep dir>.json`` that ``archbench-train -m
replicas=seeds … hydra.sweep.dir=DIR`` writes beside ``DIR``. Prints each arm's mean ± std over its
seeds, the difference of the means with a 95 % Welch interval (a changed config draws other initial
weights from the same seed, so seeds do not pair) and the smallest difference those seeds resolve.
Decide by a validation metric (the default); a test metric read this way is a report, not a choice.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from archbench.cli.common import fail, reporting_errors

PROGRAM = "archbench-trial"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, nargs="+", help="the base arm's replica summaries")
    parser.add_argument("--vs", type=Path, nargs="+", required=True, help="the trial arm's replica summaries")
    parser.add_argument("--metric", default=None,
                        help="default: the runs' validation metric (val/acc_then_loss_best for classifiers, "
                             "else their one val/…_best)")
    parser.add_argument("--scale", type=float, default=None,
                        help="printed values × this (default 100 for accuracies, as %%; else 1)")
    args = parser.parse_args(argv)
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        fail(PROGRAM, f"--scale must be a finite number > 0, got {args.scale:g}")

    def run() -> None:
        from archbench.report.trial import arm_values, default_metric, describe, welch_difference

        metric = args.metric or default_metric(args.base[0])
        scale = args.scale if args.scale is not None else (100.0 if "acc" in metric else 1.0)
        diff = welch_difference(arm_values(args.base, metric), arm_values(args.vs, metric))
        print(describe(diff, metric, scale))

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
