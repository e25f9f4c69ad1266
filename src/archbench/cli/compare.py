"""``archbench-compare [RESULTS_DIR] [REPORTS_DIR]``: the comparison report of trained runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from archbench.cli.common import fail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="archbench-compare", description=__doc__)
    parser.add_argument("results", nargs="?", default="results/train", type=Path)
    parser.add_argument("reports", nargs="?", default="reports", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="prepared data, for the scikit-learn reference rows (default: data/prepared)")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        fail("archbench-compare", f"no results directory {args.results}: run `dvc repro` first")
    from archbench.report.compare import write_report

    count = write_report(args.results, args.reports, args.data if args.data.is_dir() else None)
    print(f"compared {count} runs -> {args.reports / 'comparison.md'}")


if __name__ == "__main__":
    main()
