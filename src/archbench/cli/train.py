"""``archbench-train``: Hydra entry point over ``archbench.train.train``.

Exit codes: 0 done, 2 bad input (config, data), 3 training diverged (NaN/inf loss), 1 anything else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from archbench.cli.common import check_group_choices, fail, reporting_errors
from archbench.config import config_groups, register_resolvers
from archbench.paths import conf_dir

PROGRAM = "archbench-train"


def _precheck(argv: list[str]) -> None:
    """Fail fast, in one line, before Hydra writes anything or a multirun starts a job: on options
    and keys that do not exist, and on values ``archbench.config.validate`` refuses, in every job."""
    problem = check_group_choices(argv, config_groups())
    if problem:
        fail(PROGRAM, problem)
    multirun = _multirun_asked(argv)
    overrides = [a for a in argv if not a.startswith("-") and "=" in a and not a.startswith("hydra")]
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv) or not overrides:
        return
    if multirun and "replicas=seeds" in overrides:
        from archbench.replicas import shared_seed_folders

        problem = shared_seed_folders(overrides)
        if problem:
            fail(PROGRAM, problem)
    from archbench.config import validate

    def check() -> None:
        for cfg in _job_configs(overrides, multirun):
            validate(cfg)

    reporting_errors(PROGRAM, check)


def _multirun_asked(argv: list[str]) -> bool:
    """``-m``, ``--multirun``, or Hydra's other spelling of it, ``hydra.mode=MULTIRUN``."""
    return any(a in ("-m", "--multirun", "hydra.mode=MULTIRUN") for a in argv)


def _job_configs(overrides: list[str], multirun: bool):
    """The configs of the runs a command starts: its own, or one per combination of a multirun's
    swept values (``seed=42,43``, ``range(1,4)``: Hydra's parser expands them). Jobs that differ
    from the first only in swept plain keys are that config with the values set (~1 ms), not
    composed again (~0.1 s each, paid by every pipeline stage)."""
    from copy import deepcopy
    from itertools import product

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from archbench.config import compose

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = [o for o in parsed if multirun and o.is_sweep_override()]
    fixed = [o.input_line for o in parsed if o not in swept]
    choices = [list(zip(o.sweep_iterator(), o.sweep_string_iterator(), strict=True)) for o in swept]
    first = compose(fixed + [f"{o.get_key_element()}={c[0][1]}" for o, c in zip(swept, choices, strict=True)])
    groups = config_groups()
    plain = all(o.key_or_group not in groups and not (o.is_add() or o.is_delete())
                and OmegaConf.select(first, o.key_or_group, default=None) is not None for o in swept)
    for values in product(*choices):
        if not plain:
            yield compose(fixed + [f"{o.get_key_element()}={text}" for o, (_, text) in zip(swept, values, strict=True)])
            continue
        cfg = deepcopy(first)
        for override, (value, _) in zip(swept, values, strict=True):
            OmegaConf.update(cfg, override.key_or_group, value, merge=False)
        yield cfg


def _print_config(argv: list[str]) -> bool:
    """``--cfg job`` (or ``-c job``): print the effective config, recipe applied, as the run would
    use it. Hydra's own printer runs before archbench applies the recipe, so archbench prints it."""
    asked = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--cfg", "-c")]
    if asked != ["job"]:
        return False
    from omegaconf import OmegaConf

    from archbench.config import compose

    overrides = [a for a in argv if ("=" in a or a.startswith("~")) and not a.startswith("-")]
    cfg = reporting_errors(PROGRAM, lambda: compose(overrides, quiet=False))
    print(OmegaConf.to_yaml(cfg), end="")
    return True


def _resume_in_place(argv: list[str]) -> list[str]:
    """``resume=<run dir>`` continues that directory: Hydra runs in it (its ``paths.output_dir``
    stays the run's own, no new stray run folder is made) unless ``hydra.run.dir`` says otherwise."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    if not values or values[-1] in ("auto", "false", "False", "true", "True", "null", ""):
        return argv
    if _multirun_asked(argv) or any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    return [*argv, f"hydra.run.dir={values[-1]}"]


def run_from_hydra(cfg: DictConfig) -> float | None:
    """Body of the ``@hydra.main`` entry: the recipe, the runs this one needs, the training; returns
    the best monitored validation value (what sweepers optimise)."""
    from archbench.gc_policy import defer_collection

    defer_collection()  # a launcher's worker process starts here, not in the console script
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from archbench.cli.common import job_line, run_summary
    from archbench.config import apply_recipe, best_of
    from archbench.console import quiet_dependencies
    from archbench.provision import scoring_classifier
    from archbench.train import launch_rank, objective, train

    hydra_cfg = HydraConfig.get()
    quiet_dependencies(bool(hydra_cfg.verbose))
    best = best_of(cfg)  # a finished sweep's best lr/wd: chosen values, above the recipe
    line = apply_recipe(cfg, [*hydra_cfg.overrides.task, *(f"{k}={v}" for k, v in best.items())])
    if line:
        print(line, flush=True)
    for key, value in best.items():
        OmegaConf.update(cfg, key, value, merge=True)
    if best:
        print(f"archbench: best trial of {cfg.best_of}: "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items()), flush=True)
    OmegaConf.resolve(cfg)
    metrics = train(scoring_classifier(cfg))
    if launch_rank() == 0:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            print(run_summary(cfg.paths.output_dir), flush=True)
        elif _plain_multirun(hydra_cfg):  # a sweeper says its trials its own way
            print(job_line(cfg.paths.output_dir, hydra_cfg.job.num), flush=True)
    return objective(metrics)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        # one job of a sweep: report in one line, but let the sweeper see the error and go on
        from archbench.errors import ArchbenchError, NonFiniteLossError, RunStopped

        try:
            return run_from_hydra(cfg)
        except RunStopped:
            raise  # the sweeper records it (e.g. PRUNED); not an error
        except (ArchbenchError, NonFiniteLossError) as err:
            print(f"{PROGRAM}: error: job {HydraConfig.get().job.num}: {err}", file=sys.stderr)
            err.reported = True  # said once; kept through joblib's pickling (the instance's __dict__)
            raise
    return reporting_errors(PROGRAM, lambda: run_from_hydra(cfg))


def _plain_multirun(hydra_cfg: Any) -> bool:
    """Hydra's basic sweeper (every combination of the swept values), not an Optuna study."""
    return str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="")).endswith("BasicSweeper")


class MultirunDir(Callback):
    """Remembers a multirun's sweep directory, so that an interrupted multirun can end the MLflow
    runs its killed worker processes left open (``_end_interrupted_jobs``)."""

    current: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import signal

        MultirunDir.current = Path(str(config.hydra.sweep.dir))
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
        if "joblib" in launcher:  # jobs in worker processes: this process never trains
            signal.signal(signal.SIGTERM, _raise_terminated)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Where a plain multirun's runs are and how to see them side by side (seed replicates
        print their own summary)."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not _plain_multirun(config.hydra) or "replicas" in (config.hydra.callbacks or {}):
            return
        runs = sum(1 for _ in sweep_dir.glob("*/metrics.json"))
        if runs > 1:
            print(f"archbench: {runs} runs in {sweep_dir}; side by side, with seeds pooled: "
                  f"archbench-compare {sweep_dir} REPORT_DIR", flush=True)


def _raise_terminated(number: int, frame: Any) -> None:
    from archbench.errors import Terminated

    raise Terminated()


def _end_interrupted_jobs(err: KeyboardInterrupt) -> None:
    """After Ctrl-C (or SIGTERM, ``Terminated``) of a multirun whose launcher ran jobs in worker
    processes (joblib kills them at once), their MLflow runs end KILLED instead of staying RUNNING,
    and the line says how to go on; best effort: the interrupt is not held up by a store that fails."""
    import signal

    from archbench.errors import RunInterrupted

    if MultirunDir.current is None or isinstance(err, RunInterrupted):  # a job or a sweep said it
        return
    from archbench.tracking.mlflow_run import end_interrupted_runs

    number = getattr(err, "signal_number", signal.SIGINT)
    name = signal.Signals(number).name
    sweep_dir = MultirunDir.current
    try:
        unfinished = end_interrupted_runs(sweep_dir, f"interrupted by {name}")
    except Exception:  # noqa: BLE001 - the interrupt goes on whatever the store does
        unfinished = 0
    if unfinished:
        raise RunInterrupted(f"interrupted{' by SIGTERM' if number == signal.SIGTERM else ''}: {unfinished} "
                             f"unfinished job(s) in {sweep_dir}, their MLflow runs marked KILLED; the same command "
                             f"with hydra.sweep.dir={sweep_dir} continues them (a dvc repro stage continues by itself)",
                             number) from None
    if number != signal.SIGINT:
        raise RunInterrupted(f"interrupted by {name}", number) from None


def _run_reporting() -> None:
    """Hydra's own errors (an override of ``hydra.*``, a launcher's) end as archbench's do: one line
    and exit 2 through ``reporting_errors``, instead of Hydra's traceback and 1. A multirun ends as a
    single run does: Hydra runs every job, then re-raises the first failed job's error; one the job
    already reported in one line ("job N: ...") only sets the exit status (2 bad input, 3
    diverged). ``HYDRA_FULL_ERROR`` set by the user keeps Hydra's way."""
    import os

    from archbench.cli.common import EXIT_BAD_INPUT, EXIT_DIVERGED
    from archbench.errors import ArchbenchError, NonFiniteLossError

    if os.environ.get("HYDRA_FULL_ERROR"):
        _hydra_main()
        return

    def body() -> None:
        try:
            _hydra_main()
        except KeyboardInterrupt as err:
            _end_interrupted_jobs(err)
            raise
        except (ArchbenchError, NonFiniteLossError) as err:
            if not getattr(err, "reported", False):
                raise
            raise SystemExit(EXIT_BAD_INPUT if isinstance(err, ArchbenchError) else EXIT_DIVERGED) from None

    MultirunDir.current = None  # this command's own multirun, if it is one, sets it
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises here instead of printing and exiting 1
    try:
        reporting_errors(PROGRAM, body)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]


def main() -> None:
    from archbench.config import normalise_overrides

    register_resolvers()
    # -v: everything Lightning, Optuna and Hydra have to say (= hydra.verbose=true)
    argv = ["hydra.verbose=true" if a in ("-v", "--verbose") else a for a in sys.argv[1:]]
    sys.argv[1:] = _resume_in_place(normalise_overrides(argv))
    _precheck(sys.argv[1:])
    if _print_config(sys.argv[1:]):
        return
    _run_reporting()


if __name__ == "__main__":
    main()
