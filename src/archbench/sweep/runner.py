"""The sweep loop behind ``archbench-train -m hparams_search=…``: ask Optuna for a batch of trials
(one per parallel launcher job), launch them through Hydra's launcher (basic: in this process;
joblib: in parallel processes), tell Optuna how each ended; MLflow parent run and registry at the end.

A trial's identity travels in its job's overrides (``logger.parent_run_id``, ``logger.tags``,
``callbacks.extra.optuna_pruning``): ``train()`` never sees Optuna.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NoReturn

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from archbench.errors import ConfigError, RunStopped
from archbench.stores import check_store
from archbench.sweep import study as studies
from archbench.sweep.space import suggest, validate_space
from archbench.train import check_trainer

EXIT_SWEEP_BROKEN = 4


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_resolution_failure=True)


def _base_overrides(arguments: list[str], space: dict[str, Any]) -> list[str]:
    """The command line's overrides, minus the keys the study searches."""
    kept = []
    for argument in arguments:
        key = argument.split("=", 1)[0].lstrip("+~")
        if key in space:
            continue
        if "," in argument.split("=", 1)[-1] and "[" not in argument and "(" not in argument:
            raise ConfigError(f"{argument}: a comma list sweeps with Hydra's basic sweeper; under "
                              f"hparams_search put the key in hydra.sweeper.params instead")
        kept.append(argument)
    return kept


def _outcome(job_return) -> tuple[TrialState, float | None, str]:
    from hydra.core.utils import JobStatus

    if job_return.status != JobStatus.COMPLETED:
        # the job's exception (``return_value`` would re-raise it and print "Error executing job")
        err = job_return._return_value
        if isinstance(err, RunStopped):
            return TrialState.PRUNED, None, str(err)
        return TrialState.FAIL, None, f"{type(err).__name__}: {err}"[:2000]  # the sweep goes on
    value = job_return.return_value
    if value is None or not math.isfinite(float(value)):
        return TrialState.FAIL, None, f"objective is {value!r}"
    return TrialState.COMPLETE, float(value), ""


def _monitor(cfg: DictConfig, meta_task: str) -> tuple[str, str]:
    """The objective's metric and mode; ``auto`` means the task's own (the data's when the config
    leaves it to the data: your own table's ``data.task=auto``)."""
    monitor, mode = _select(cfg, "callbacks.monitor"), _select(cfg, "callbacks.mode")
    if "auto" not in (monitor, mode):
        return monitor, mode
    from archbench.tasks import load_task, task_name

    return load_task(task_name(cfg.model, cfg.data, meta_task)).resolve_monitor(monitor, mode)


def _prepared(cfg: DictConfig):
    """The study's prepared data (``meta``), prepared now as its first trial would prepare it: a
    bad file is one line before the study exists, and its task and checksum define the study."""
    from archbench.config import to_dict
    from archbench.data.prepare import ensure_prepared

    return ensure_prepared(to_dict(cfg.data))[0]


def _experiment(cfg: DictConfig, space: dict[str, Any], checksum: str) -> dict[str, Any]:
    groups = {group: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
              for group in studies.EXPERIMENT_GROUPS for node in [OmegaConf.select(cfg, group)]}
    return studies.experiment(groups, space, checksum)


class Tracking:
    """The study's MLflow parent run (one per study, reused when the study is continued)."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        from mlflow import MlflowClient

        from archbench.tracking.mlflow_run import store_lock

        self.tracking_uri = tracking_uri
        from archbench.tracking.mlflow_run import EXPERIMENT_TAGS

        with store_lock(tracking_uri):  # the client creates (and migrates) a new store
            self.client = MlflowClient(tracking_uri)
            self.experiment_id = self._experiment_id(experiment, EXPERIMENT_TAGS)

    def _experiment_id(self, name: str, tags: dict[str, str]) -> str:
        """The experiment's id, created if missing; on a tracking server another worker may create
        it between the look-up and the creation (no file lock reaches there): then it is read."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, tags=tags)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def parent_run(self, study: optuna.Study, tags: dict[str, str]) -> str:
        from mlflow.exceptions import MlflowException

        run_id = study.user_attrs.get("mlflow_parent_run_id")
        if run_id:
            try:
                self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                return run_id
            except MlflowException:
                pass  # a different tracking store than the study's first run
        run = self.client.create_run(self.experiment_id, run_name=f"sweep-{study.study_name}", tags=tags)
        study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
        return run.info.run_id

    def fail_orphans(self, study: optuna.Study) -> None:
        """Trials marked FAIL as stale (their process died) have an MLflow run the sweep never
        told: still RUNNING, or FINISHED when the process died between the end of training and
        ``study.tell``. Both are tagged FAIL; a RUNNING one ends FAILED."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            run_id = trial.user_attrs.get("mlflow_run_id")
            if not run_id:
                continue
            run = self.client.get_run(run_id)
            if "optuna.trial_state" in run.data.tags:
                continue  # told by the sweep that ran it
            self.client.set_tag(run_id, "optuna.trial_state", "FAIL")
            if run.info.status == "RUNNING":
                self.client.set_tag(run_id, "failure_reason", "the trial's process died (stale heartbeat)")
                self.client.set_terminated(run_id, "FAILED")
            else:
                self.client.set_tag(run_id, "failure_reason", "the sweep's process died after the training "
                                    "ended, before Optuna recorded its result (stale heartbeat)")


def _check_before_study(cfg: DictConfig, space: dict[str, Any], n_trials: int, url: str) -> None:
    """What would fail every trial, refused before the study and its MLflow parent run exist."""
    validate_space(space)
    if n_trials < 1:
        raise ConfigError(f"hydra.sweeper.n_trials must be ≥ 1 (the study's whole budget), got {n_trials}")
    check_trainer(cfg)
    check_store(url, "hydra.sweeper.storage")
    check_store(_select(cfg, "logger.tracking_uri"), "logger.tracking_uri")


def run_sweep(sweeper, arguments: list[str]) -> list[dict[str, Any]]:
    conf: dict[str, Any] = sweeper.conf
    cfg: DictConfig = sweeper.config
    space = dict(conf.get("params") or {})
    from archbench.console import quiet_dependencies

    quiet_dependencies(bool(OmegaConf.select(cfg, "hydra.verbose", default=False)))
    n_trials = int(conf["n_trials"])
    url = conf.get("storage") or f"sqlite:///{_select(cfg, 'paths.root')}/optuna.db"
    _check_before_study(cfg, space, n_trials, url)
    meta = _prepared(cfg)
    monitor, mode = _monitor(cfg, meta.task)
    direction = conf.get("direction") or ("maximize" if mode == "max" else "minimize")
    data, model = _select(cfg, "data.name"), _select(cfg, "model.name")
    name = conf.get("study_name") or studies.study_name(data, model, space, _experiment(cfg, space, meta.checksum))
    sampler_cfg = dict(conf.get("sampler") or {})
    base = _base_overrides(list(arguments), space)
    tracking = Tracking(_select(cfg, "logger.tracking_uri"), _select(cfg, "logger.experiment_name"))

    storage, study, parent = _open_study(url, name, direction, conf, tracking, data, model)
    study_id = storage.get_study_id_from_name(name)
    print(f"archbench-sweep: study {name!r} in {url}: {len(study.trials)} of {n_trials} trials "
          f"exist; objective {direction} {monitor}_best", flush=True)

    results: list[dict[str, Any]] = []
    jobs = _parallel_jobs(cfg)
    while True:
        batch = _ask(study, url, n_trials, jobs, sampler_cfg)
        if not batch:
            break
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        trial_base = base + _threads_override(base, max(jobs, running))
        launched = []
        for trial in batch:
            values = suggest(trial, space)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            launched.append((trial, trial_id, values, trial_base + _trial_overrides(
                url, name, trial_id, trial.number, parent, monitor, conf, f"{model}-{data}") + [
                f"{key}={value!r}" for key, value in values.items()]))
        with studies.Heartbeats(storage, [t[1] for t in launched], conf.get("heartbeat_interval")):
            try:
                returns = sweeper.launcher.launch([t[3] for t in launched],
                                                  initial_job_idx=batch[0].number)
            except KeyboardInterrupt as err:
                _interrupted(study, storage, [t[:2] for t in launched], tracking, parent, n_trials, err)
        for (trial, trial_id, values, _), job in zip(launched, returns, strict=True):
            results.append(_tell(study, storage, trial, trial_id, values, job, tracking))
        _stop_if_broken(study, float(conf.get("max_failure_rate", 1.0)))

    with studies.budget_lock(url):  # one worker at a time decides whether it is the last
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial must not hold the study open
        others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if others:
            print(f"archbench-sweep: this worker is done; {len(others)} trial(s) still run in other "
                  f"workers, the last to finish closes the study", flush=True)
            return results
        return _finish(study, conf, cfg, tracking, parent, monitor, mode, data, model, results)


def _open_study(url: str, name: str, direction: str, conf: dict[str, Any], tracking: Tracking,
                data: str, model: str) -> tuple[Any, optuna.Study, str]:
    """(storage, study, MLflow parent run id), created by the first worker or joined by the others;
    trials of dead workers are failed in Optuna and in MLflow."""
    with studies.budget_lock(url):  # the first worker creates the storage's tables, alone
        storage = studies.open_storage(url, conf.get("heartbeat_interval"), conf.get("grace_period"))
        study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                    sampler=studies.make_sampler(dict(conf.get("sampler") or {})),
                                    pruner=studies.make_pruner(dict(conf.get("pruner") or {})),
                                    load_if_exists=True)
        optuna.storages.fail_stale_trials(study)  # a no-op for storages without heartbeats
        parent = tracking.parent_run(study, {"optuna.study": name, "archbench.sweep": "parent",
                                             "data": data, "model": model})
    tracking.fail_orphans(study)
    return storage, study, parent


def _parallel_jobs(cfg: DictConfig) -> int:
    """Trials run at once: the launcher's ``n_jobs`` (joblib), 1 for Hydra's basic launcher."""
    n_jobs = OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=None)
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)  # joblib's -1 = all


def _threads_override(base: list[str], trainings: int) -> list[str]:
    """Trainings running side by side (this launcher's jobs, other workers' trials) share the
    cores: each gets cores ÷ trainings torch threads, unless the user set ``threads``."""
    if trainings <= 1 or any(a.split("=", 1)[0].lstrip("+") == "threads" for a in base):
        return []
    return [f"threads={max(1, (os.cpu_count() or 1) // trainings)}"]


def _ask(study: optuna.Study, url: str, n_trials: int, jobs: int, sampler_cfg: dict) -> list:
    """Up to ``jobs`` new trials, never past the study's budget (counted under the workers' lock)."""
    batch = []
    with studies.budget_lock(url):
        # enqueued (WAITING) trials are not spent yet: ask() hands them out first
        existing = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
        for number in range(existing, min(n_trials, existing + jobs)):
            if sampler_cfg.get("seed") is not None:  # seed per trial number: reproducible, and
                study.sampler = studies.make_sampler(  # parallel workers do not draw alike
                    {**sampler_cfg, "seed": int(sampler_cfg["seed"]) + number})
            batch.append(study.ask())
    return batch


def _trial_overrides(url: str, study: str, trial_id: int, number: int, parent: str, monitor: str,
                     conf: dict, run_name: str) -> list[str]:
    """What makes a job a trial: nested under the parent run, tagged, pruned by callback."""
    pruner = json.dumps(dict(conf.get("pruner") or {}), sort_keys=True)
    key = "+callbacks.extra.optuna_pruning"
    return [f"logger.parent_run_id={parent}", f"run_name={run_name}-t{number:03d}",
            f"+logger.tags.optuna.study='{study}'",
            f"+logger.tags.optuna.trial_number={number}",
            f"{key}._target_=archbench.sweep.pruning.OptunaPruning", f"{key}.storage='{url}'",
            f"{key}.study_name='{study}'", f"{key}.trial_id={trial_id}", f"{key}.monitor='{monitor}'",
            f"{key}.pruner='{pruner}'"]


def _tell(study, storage, trial, trial_id: int, values: dict, job, tracking) -> dict[str, Any]:
    """Record how one trial's job ended, in Optuna and on its MLflow run."""
    state, value, reason = _outcome(job)
    run_id = storage.get_trial(trial_id).user_attrs.get("mlflow_run_id")
    if run_id:
        tracking.client.set_tag(run_id, "optuna.trial_state", state.name)
    if reason:
        trial.set_user_attr("reason", reason)
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    shown = f"{value:.4f}" if value is not None else reason.splitlines()[0][:160]
    print(f"archbench-sweep: trial {trial.number} {state.name}: {shown} {values}", flush=True)
    return {"trial": trial.number, "state": state.name, "value": value, "params": values}


def _interrupted(study, storage, launched: list, tracking, parent: str, n_trials: int,
                 err: KeyboardInterrupt) -> NoReturn:
    """Ctrl-C or SIGTERM while trials ran: they end FAIL at once (their MLflow runs KILLED, as the
    training left them), not after a stale heartbeat; the parent run ends KILLED. The same command
    continues the study (a continued study reopens its parent run)."""
    import signal

    from archbench.errors import RunInterrupted
    from archbench.tracking.mlflow_run import end_killed

    number = getattr(err, "signal_number", signal.SIGINT)
    reason = f"interrupted by {signal.Signals(number).name}"
    stopped = []
    for trial, trial_id in launched:
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            continue
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        run_id = storage.get_trial(trial_id).user_attrs.get("mlflow_run_id")
        if run_id:
            tracking.client.set_tag(run_id, "optuna.trial_state", "FAIL")
            end_killed(tracking.client, run_id, reason)  # a joblib worker could not
        stopped.append(str(trial.number))
    tracking.client.set_terminated(parent, "KILLED")
    finished = len([t for t in study.get_trials(deepcopy=False) if t.state in studies.FINISHED])
    raise RunInterrupted(f"sweep {reason}: trial"
                         f"{'s' if len(stopped) > 1 else ''} {', '.join(stopped) or '-'} marked FAIL, "
                         f"{finished} of {n_trials} trials "
                         f"ended; the same command continues the study; MLflow runs marked KILLED", number) from None


def _stop_if_broken(study: optuna.Study, max_failure_rate: float) -> None:
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in studies.FINISHED]
    failed = [t for t in finished if t.state == TrialState.FAIL]
    if len(failed) >= 2 and len(failed) / len(finished) > max_failure_rate:
        last = failed[-1].user_attrs.get("reason", "?").splitlines()[0]
        print(f"archbench-train: error: sweep stopped: {len(failed)} of {len(finished)} trials failed "
              f"(hydra.sweeper.max_failure_rate={max_failure_rate}); last: {last}", flush=True)
        raise SystemExit(EXIT_SWEEP_BROKEN)


def _finish(study, conf, cfg, tracking, parent, monitor, mode, data, model, results):
    """Summary file, the parent run's params/metrics/artifacts, and the registry champion."""
    sweep_dir = Path(_select(cfg, "hydra.sweep.dir"))
    result = {**studies.summary(study), "data": data, "model": model}
    client = tracking.client
    client.log_batch(parent, params=[
        _param("search_space", json.dumps(conf.get("params"), sort_keys=True)),
        _param("sampler", json.dumps(conf.get("sampler"), sort_keys=True)),
        _param("pruner", json.dumps(conf.get("pruner"), sort_keys=True)),
        _param("n_trials", conf["n_trials"]), _param("direction", study.direction.name.lower()),
        _param("objective", f"{monitor}_best"),
    ] if "search_space" not in client.get_run(parent).data.params else [])
    for key in ("trials", "complete", "pruned", "fail", "trial_epochs", "best_value"):
        if key in result:
            client.log_metric(parent, f"sweep/{key}", float(result[key]))
    if "best_params" in result:
        client.set_tag(parent, "best_params", json.dumps(result["best_params"], sort_keys=True))
        client.set_tag(parent, "best_run_id", str(result.get("best_run_id")))
        if conf.get("register", True):
            result["registered"] = _register_best(tracking, result, monitor, mode, data, model)
    for path in studies.write_study_artifacts(study, sweep_dir):
        client.log_artifact(parent, str(path))
    (sweep_dir / "sweep.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    client.set_terminated(parent, "FINISHED")
    print(f"archbench-sweep: done: {json.dumps(result, default=str)}", flush=True)
    return results


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value)[:6000])


def _register_best(tracking: Tracking, result, monitor, mode, data, model) -> dict[str, Any] | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from archbench.tracking.registry import register_and_promote, registered_name

    run_id = result.get("best_run_id")
    if not run_id:
        return None
    try:
        model_uri = tracking.client.get_run(run_id).data.tags.get("model_uri")
    except MlflowException:  # a study continued against another store (or its runs deleted)
        print(f"archbench-sweep: not registered: the best trial's run {run_id} is not in "
              f"{tracking.tracking_uri} (the study was tracked elsewhere, or its runs were deleted); "
              f"use that store, or start another study (hydra.sweeper.study_name=NAME)", flush=True)
        return None
    if not model_uri:
        return None
    name = registered_name(data, model)
    for version in tracking.client.search_model_versions(f"name='{name}'"):
        if version.run_id == run_id:  # a continued study whose best did not change
            return {"name": name, "version": version.version, "champion": None}
    mlflow.set_tracking_uri(tracking.tracking_uri)
    promotion = register_and_promote(model_uri, name, run_id, f"{monitor}_best", mode)
    return {"name": promotion.name, "version": promotion.version, "champion": promotion.promoted}
