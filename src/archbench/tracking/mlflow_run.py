"""One MLflow run per training: params, config, tags, curves (via archbench.tracking.logger,
Lightning's MLFlowLogger sending them in batches),
artifacts and the model."""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import DictConfig, OmegaConf

from archbench.config import flatten
from archbench.errors import RunStopped


def git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def store_lock(tracking_uri: str):
    """Serialise the first touch of a local sqlite store: MLflow creates and migrates its tables
    then, and two processes doing it at once collide ("table already exists")."""
    from archbench.locks import lock_beside

    return lock_beside(tracking_uri, ".lock")


# MLflow 3's UI opens an experiment in its model-training view (runs, charts, models) rather than
# the GenAI overview when it carries this tag
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def configure(cfg: DictConfig) -> str:
    """Point MLflow at the configured store; returns the experiment id."""
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    with store_lock(cfg.logger.tracking_uri):
        experiment = mlflow.set_experiment(cfg.logger.experiment_name)
        if experiment.tags.get("mlflow.experimentKind") is None:
            mlflow.set_experiment_tags(EXPERIMENT_TAGS)
    return experiment.experiment_id


@contextmanager
def training_run(cfg: DictConfig, tags: dict[str, str], parent_run_id: str | None = None,
                 resume_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """An active MLflow run that ends FINISHED, or FAILED (with the reason tagged) on error.

    With ``resume_run_id`` the killed run itself is reopened and continued (not a new, orphan one).
    """
    configure(cfg)
    all_tags = {"git_commit": git_commit(Path(cfg.paths.root)), **tags}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    previous = None
    if resume_run_id:
        try:
            previous = mlflow.get_run(resume_run_id)
        except mlflow.exceptions.MlflowException:
            resume_run_id = None  # a different tracking store: start a new run
        else:  # continued: an earlier attempt's failure is no longer the run's state
            for tag in ("failure_reason", "interrupted"):
                if tag in previous.data.tags:
                    mlflow.MlflowClient().delete_tag(resume_run_id, tag)
    start = {"run_id": resume_run_id} if resume_run_id else {"run_name": cfg.run_name, "tags": all_tags}
    with mlflow.start_run(**start) as run:
        try:
            params = {k: ("" if v is None else str(v)[:6000]) for k, v in flatten(cfg).items()
                      if k != "resume"}
            if previous is not None:  # a param is logged once: what the continuation changed
                # (where it runs: devices, nodes) becomes a resumed_with.* tag
                logged = previous.data.params
                mlflow.set_tags({f"resumed_with.{k}": v for k, v in params.items()
                                 if k in logged and logged[k] != v})
                params = {k: v for k, v in params.items() if k not in logged}
            mlflow.log_params(params)
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            yield run
        except RunStopped as err:  # ended early on purpose (e.g. pruned): not a failure
            mlflow.set_tags(err.tags)
            mlflow.end_run("KILLED")
            raise
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (archbench.errors.RunInterrupted)
            mlflow.set_tag("interrupted", str(err) or "KeyboardInterrupt")
            mlflow.end_run("KILLED")
            raise
        except BaseException as err:
            mlflow.set_tag("failure_reason", f"{type(err).__name__}: {err}"[:5000])
            raise


def pip_requirements() -> list[str]:
    """The serving requirements, pinned to what is installed (MLflow's own inference of them starts
    a subprocess that re-imports the model: ~10 s per run)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "mlflow", "numpy"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def log_torch_model(model: Any, example: Any, serialization_format: str | None = None,
                    metadata: dict[str, Any] | None = None) -> str:
    """Log a torch model with signature and input example (and ``metadata`` in its MLmodel file);
    returns its model URI."""
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    model = model.eval()
    with torch.no_grad():
        output = model(example).numpy()
    x = example.numpy()
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    with warnings.catch_warnings():
        # torch's pt2 packager looks for a contiguous tensor spanning each weight's storage, warns when
        # a channels-last conv weight (trainer.channels_last) offers none, and saves that weight whole:
        # the loaded model's outputs are the same bits (tests/test_speed.py)
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        info = mlflow.pytorch.log_model(
            model, name="model", signature=infer_signature(x, output), input_example=x,
            serialization_format=serialization_format, pip_requirements=pip_requirements(), metadata=metadata)
    return info.model_uri


def log_metrics(metrics: dict[str, float]) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})


def end_interrupted_runs(sweep_dir: Path, reason: str) -> int:
    """End ``KILLED`` the MLflow runs of a multirun's jobs that did not finish (a ``run.json`` without
    a ``metrics.json`` below ``sweep_dir``) and are still open, or were left ``FAILED`` by Lightning's
    logger: worker processes killed by their launcher before they could end their runs. Returns how
    many jobs are unfinished (a worker that caught the signal in time ended its run itself)."""
    import json

    unfinished = 0
    for run_file in sorted(Path(sweep_dir).rglob("run.json")):
        config = run_file.with_name("config.yaml")
        run_id = json.loads(run_file.read_text()).get("run_id")
        if run_file.with_name("metrics.json").is_file() or not run_id or not config.is_file():
            continue
        end_killed(mlflow.MlflowClient(str(OmegaConf.load(config).logger.tracking_uri)), run_id, reason)
        unfinished += 1
    return unfinished


def end_killed(client: mlflow.MlflowClient, run_id: str, reason: str) -> bool:
    """End ``KILLED`` a run its process could not end (killed by its launcher, or left ``FAILED`` by
    Lightning's logger on the way out), tagged ``interrupted`` (a reason the run recorded itself is
    kept); False for a run already ended otherwise."""
    run = client.get_run(run_id)
    if run.info.status not in ("RUNNING", "FAILED"):
        return False
    if "interrupted" not in run.data.tags:
        client.set_tag(run_id, "interrupted", reason)
    client.set_terminated(run_id, "KILLED")
    return True
