"""Optuna study plumbing for the sweeper: storage, sampler, pruner, the trial budget shared by
parallel workers, stale trials, and the MLflow parent run with the study's summary."""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from archbench.errors import ConfigError
from archbench.locks import local_store_path, lock_beside

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

_STORAGES: dict[tuple, Any] = {}


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """An Optuna storage: ``sqlite:///…`` or any SQLAlchemy URL (RDB, with heartbeats so a killed
    trial is later marked FAIL), or ``journal:<path>`` (a journal file on shared disk)."""
    key = (url, heartbeat_interval, grace_period)
    if key in _STORAGES:
        return _STORAGES[key]
    path = local_store_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    else:
        # parallel workers on one sqlite file wait for each other instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}} if path is not None else {}
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                             heartbeat_interval=heartbeat_interval,
                                             grace_period=grace_period)
    _STORAGES[key] = storage
    return storage


def make_sampler(cfg: dict[str, Any]) -> optuna.samplers.BaseSampler:
    name, seed = cfg.get("name", "tpe"), cfg.get("seed")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(cfg.get("n_startup_trials", 4)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def make_pruner(cfg: dict[str, Any]) -> optuna.pruners.BasePruner:
    name = cfg.get("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(cfg.get("n_startup_trials", 2)),
                                           n_warmup_steps=int(cfg.get("n_warmup_steps", 2)))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(cfg.get("min_resource", 2)),
                                              max_resource=cfg.get("max_resource", "auto"),
                                              reduction_factor=int(cfg.get("reduction_factor", 3)))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")


def study_name(data: str, model: str, space: dict[str, Any], experiment: dict[str, Any] | None = None) -> str:
    """``<data>-<model>-<hash of the search space and the experiment>``: the same command on the
    same data continues the same study; another file, model size or budget starts its own."""
    digest = hashlib.sha256(json.dumps([space, experiment or {}], sort_keys=True, default=str).encode()).hexdigest()
    return f"{data}-{model}-{digest[:8]}"


# the config groups a trial's result depends on
EXPERIMENT_GROUPS = ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "seed", "distill", "decode")
# where the data's files are (identified by the prepared checksum instead) and the trial's own
# pruning callback; where and how a trial runs is resume's NOT_FINGERPRINTED: a worker on another
# machine, device or thread count joins the same study
PLACE_KEYS = ("data.dir", "data.url", "data.download", "data.location_keys", "callbacks.extra")


def experiment(groups: dict[str, Any], space: dict[str, Any], data_checksum: str) -> dict[str, Any]:
    """What a study tunes, less the keys it searches: the prepared data by its checksum (the same
    file read from another folder or machine is the same data) and every other group of
    ``EXPERIMENT_GROUPS`` (plain values of the composed config), less where and how it runs."""
    from archbench.config import drop_keys
    from archbench.data.prepare import SOURCE_KEYS
    from archbench.resume import NOT_FINGERPRINTED

    picked = json.loads(json.dumps({g: groups.get(g) for g in EXPERIMENT_GROUPS}, default=str))
    data = picked["data"] or {}
    located = {*SOURCE_KEYS, *(data.get("location_keys") or [])}
    drop_keys(picked, [*NOT_FINGERPRINTED, *PLACE_KEYS, *(f"data.{k}" for k in located), *space])
    picked["data"] = {**data, "checksum": data_checksum}
    return picked


def budget_lock(url: str):
    """Serialise "count the trials, then ask for one" across worker processes so that N workers
    create exactly ``n_trials`` (and the first one creates the storage's tables alone). A lock file
    beside a local storage file; on PostgreSQL the server's own advisory lock, which reaches every
    machine that shares the study; on other server databases the budget is best effort.
    (Not "<file>.lock": Optuna's journal backend takes that name for its own lock.)"""
    if url.startswith(("postgresql", "postgres:")):
        return _advisory_lock(url)
    return lock_beside(url, ".workers.lock", timeout=120)


# one key for every archbench sweep on a PostgreSQL server (its critical sections are short)
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"archbench.sweep.budget").digest()[:8], "big", signed=True)


@contextmanager
def _advisory_lock(url: str):
    """PostgreSQL's session-level advisory lock, held on its own connection."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
    finally:
        engine.dispose()


class Heartbeat:
    """Records the running trial's heartbeat (RDB storages) so a restarted sweep can tell a trial
    whose process died from one another worker is still running (``fail_stale_trials``)."""

    def __init__(self, storage, trial_id: int, interval: int | None) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.interval and hasattr(self.storage, "record_heartbeat"):
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.storage.record_heartbeat(self.trial_id)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Heartbeats:
    """One ``Heartbeat`` per trial of a batch launched together."""

    def __init__(self, storage, trial_ids: list[int], interval: int | None) -> None:
        self.beats = [Heartbeat(storage, trial_id, interval) for trial_id in trial_ids]

    def __enter__(self) -> Heartbeats:
        for beat in self.beats:
            beat.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for beat in self.beats:
            beat.__exit__(*exc)


def trial_epochs(study: optuna.Study) -> int:
    """Epochs actually trained across the study's trials (one reported value per epoch)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def chosen_values(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as the values the training used: an ``include_zero`` switch
    (``optimizer.weight_decay=0: True``) becomes ``optimizer.weight_decay: 0.0``."""
    values = {k: v for k, v in params.items() if not k.endswith("=0")}
    for switch, is_zero in params.items():
        if switch.endswith("=0") and is_zero:
            values[switch.removesuffix("=0")] = 0.0
    return dict(sorted(values.items()))


def summary(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    result: dict[str, Any] = {"study": study.study_name, "direction": study.direction.name.lower(),
                              "trials": len(trials), **counts, "trial_epochs": trial_epochs(study)}
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        result.update(best_value=best.value, best_params=chosen_values(best.params), best_trial=best.number,
                      best_run_id=best.user_attrs.get("mlflow_run_id"))
    return result


def write_study_artifacts(study: optuna.Study, out_dir: Path) -> list[Path]:
    """trials.csv, optimisation history and parameter importances (PNG) for the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    trials_csv = out_dir / "trials.csv"
    study.trials_dataframe().to_csv(trials_csv, index=False)
    paths.append(trials_csv)
    completed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if len(completed) >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    for name, plot in plots:
        try:
            with warnings.catch_warnings(record=True) as caveats:  # said once below, without a source line
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
        except (ValueError, RuntimeError) as err:  # e.g. importances of a constant parameter
            print(f"archbench-sweep: skipped {name}: {err}")
            continue
        for caveat in dict.fromkeys(str(w.message) for w in caveats):  # e.g. too few trials per regime
            print(f"archbench-sweep: {name}: {caveat}")
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=100)
        plt.close(figure)
        paths.append(out_dir / name)
    return paths
