"""``archbench-compare [RESULTS_DIR] [REPORTS_DIR]``: the comparison report of trained runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from archbench.cli.common import fail, reporting_errors

PROGRAM = "archbench-compare"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="archbench-compare", description=__doc__)
    parser.add_argument("results", nargs="?", default="results/train", type=Path,
                        help="a folder of finished runs, at any depth (default: results/train, the pipeline's); "
                             "runs differing in more than the seed are separate rows")
    parser.add_argument("reports", nargs="?", default="reports", type=Path,
                        help="where comparison.md and its figures go (default: reports)")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared data, for the scikit-learn reference rows (default: the project's "
                             "data/prepared, else the folder each run recorded)")
    parser.add_argument("--mlflow", nargs="?", const="default", default=None, metavar="URI",
                        help="also log the report as an MLflow run (experiment archbench-comparison); "
                             "URI default: MLFLOW_TRACKING_URI, else the project's sqlite store")
    parser.add_argument("--efficiency", type=Path, default=None, metavar="DIR",
                        help="also write reports/efficiency.md from the data-efficiency runs in DIR "
                             "(make efficiency) and the full-data runs in RESULTS")
    args = parser.parse_args(argv)
    _require_runs(args.results, "run `dvc repro` first, or name the results folder, e.g. results/train",
                  args.reports)
    if args.efficiency is not None:
        _require_runs(args.efficiency, "run `make efficiency` first (its runs go to results/efficiency)",
                      args.reports)
    data = _reference_data(args.data)
    uri = _tracking_uri(args.mlflow)
    reporting_errors(PROGRAM, lambda: _write(args, data, uri))


def _write(args: argparse.Namespace, data: Path | None, uri: str | None) -> None:
    from archbench.report.compare import write_report

    count = write_report(args.results, args.reports, data)
    print(f"compared {count} runs -> {args.reports / 'comparison.md'}")
    if args.efficiency is not None:
        from archbench.report.efficiency import write_efficiency

        shown = write_efficiency([args.efficiency, args.results], args.reports)
        print(f"data efficiency of {shown} datasets -> {args.reports / 'efficiency.md'}")
    if uri:
        from archbench.report.compare import log_to_mlflow

        print(f"logged to MLflow run {log_to_mlflow(args.reports, uri)} ({uri})")


def _reference_data(given: Path | None) -> Path | None:
    """The prepared data the reference rows are fitted on: a ``--data`` that is not a folder is
    refused; by default the project's, where it exists (else each run's recorded folder serves, and
    a dataset found in neither is said by the report)."""
    if given is not None and not given.is_dir():
        fail(PROGRAM, f"--data {given}: no such folder; it holds the prepared datasets the reference "
                      f"rows are fitted on (archbench-prepare writes them, by default to data/prepared)")
    if given is not None:
        return given
    from archbench.paths import project_root

    default = project_root() / "data" / "prepared"  # where training prepares, from any directory
    return default if default.is_dir() else None


def _tracking_uri(asked: str | None) -> str | None:
    """``--mlflow``'s store, checked before anything is written: a server or database that does not
    answer is one line, not minutes of MLflow's retries after the report is written."""
    if not asked:
        return None
    import os

    from archbench.paths import project_root
    from archbench.stores import check_tracking_store

    uri = asked if asked != "default" else os.environ.get(
        "MLFLOW_TRACKING_URI", f"sqlite:///{project_root() / 'mlflow.db'}")
    reporting_errors(PROGRAM, lambda: check_tracking_store(uri, "--mlflow"))
    return uri


def _require_runs(folder: Path, hint: str, reports: Path) -> None:
    """One line and exit 2, before anything is written, when ``folder`` holds no finished run: an
    empty report must not replace a full one."""
    from archbench.report.compare import finished_runs

    if not folder.is_dir():
        fail(PROGRAM, f"no results directory {folder}: {hint}")
    if next(finished_runs(folder), None) is None:
        fail(PROGRAM, f"no finished runs in {folder} (none of its folders holds a run.json "
                                  f"beside a metrics.json): {hint}; {reports} is left as it was")


if __name__ == "__main__":
    main()
