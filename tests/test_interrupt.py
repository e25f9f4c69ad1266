"""Ctrl-C (SIGINT) and SIGTERM (kill, a container stopping, a scheduler) stop a training with one
line saying how to continue it, exit 128 + the signal, and the MLflow run KILLED; a sweep's
interrupted trial ends FAIL at once and the same command continues the study. Before, Lightning's
handlers made it exit 1 (SIGINT) or 0 (SIGTERM: "success") with the run FAILED."""

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
from conftest import BIN, REPO, call_cli
from optuna.trial import TrialState

pytestmark = pytest.mark.slow
# the signalled sweeps and multiruns train for 5000 epochs, so none can end before its signal
# (40 digits-logistic epochs take ~3.5 s here)


def _started(command: list[str], env: dict) -> subprocess.Popen:
    """The program in its own process group (a terminal's Ctrl-C reaches the whole group), with
    Ctrl-C's default action (a shell's background job would ignore SIGINT)."""
    return subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=REPO, text=True,
                            env={**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _signalled_once_an_epoch_is_saved(process: subprocess.Popen, pattern: str, root: Path,
                                      number: int, saved: int = 1, group: bool = True) -> str:
    """Send ``number`` to the process group (to the process alone unless ``group``) once ``saved``
    checkpoints matching ``pattern`` under ``root`` exist; the stderr."""
    deadline = time.monotonic() + 240
    while len(list(root.glob(pattern))) < saved and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read()[-2000:]
    time.sleep(0.3)  # into the next epoch
    (os.killpg if group else os.kill)(process.pid, number)
    _, stderr = process.communicate(timeout=120)
    return stderr


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signalled_training_says_how_to_continue_and_ends_killed(tmp_path, number):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run_dir = tmp_path / "run"
    command = ["archbench-train", "data=digits", "model=mlp", "data.batch_size=16", "trainer.max_epochs=30",
               "callbacks.progress_bar=none", "callbacks.early_stopping.enabled=false", "logger.log_model=false",
               f"paths.data_dir={tmp_path / 'prepared'}", f"hydra.run.dir={run_dir}"]
    process = _started(command, env)
    stderr = _signalled_once_an_epoch_is_saved(process, "run/checkpoints/last.ckpt", tmp_path, number)
    assert process.returncode == 128 + number  # as a shell reports a signalled process
    name = signal.Signals(number).name
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"archbench-train: interrupted by {name} in epoch "), stderr[-2000:]
    assert f"resume={run_dir} continues it" in last and last.endswith("MLflow run marked KILLED")
    epoch, finished = map(int, re.search(r"in epoch (\d+); (\d+) finished epochs are in", last).groups())
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1
    assert finished == saved and epoch in (saved, saved + 1)
    assert "Traceback" not in stderr
    assert not (run_dir / "metrics.json").exists()
    run = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(
        json.loads((run_dir / "run.json").read_text())["run_id"])
    assert run.info.status == "KILLED" and run.data.tags["interrupted"].startswith(f"interrupted by {name}")
    assert "failure_reason" not in run.data.tags

    again = call_cli(*command, f"resume={run_dir}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 30
    run = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "interrupted" not in run.data.tags


def test_an_interrupted_sweep_fails_its_trial_at_once_and_the_same_command_continues(tmp_path):
    store = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = ["archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
               "trainer.max_epochs=5000", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.name=none",
               f"hydra.sweeper.storage={store}", "callbacks.early_stopping.enabled=false",
               f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    process = _started(command, env)
    stderr = _signalled_once_an_epoch_is_saved(process, "sweep/0_*/checkpoints/last.ckpt", tmp_path,
                                               signal.SIGINT)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == (
        "archbench-train: sweep interrupted by SIGINT: trial 0 marked FAIL, 1 of 2 trials ended; the same "
        "command continues the study; MLflow runs marked KILLED"), stderr[-2000:]
    [summary] = optuna.get_all_study_summaries(store)
    [trial] = optuna.load_study(study_name=summary.study_name, storage=store).trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["reason"] == "interrupted by SIGINT"
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("archbench").experiment_id])}
    parent = runs.pop(f"sweep-{summary.study_name}")
    assert parent.info.status == "KILLED"
    [(_, child)] = runs.items()
    assert child.info.status == "KILLED" and child.data.tags["optuna.trial_state"] == "FAIL"

    # a shorter budget is another experiment (its own study) unless the study is named
    shorter = [a.replace("trainer.max_epochs=5000", "trainer.max_epochs=2") for a in command]
    again = call_cli(*shorter, f"hydra.sweeper.study_name={summary.study_name}", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name=summary.study_name, storage=store).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_an_interrupted_parallel_sweep_ends_every_trial_and_its_run(tmp_path):
    """Under the joblib launcher the worker processes are killed by joblib once the parent is
    interrupted, some before they end their MLflow runs: the parent ends them KILLED."""
    store = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = ["archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
               "trainer.max_epochs=5000", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.name=none",
               f"hydra.sweeper.storage={store}", "callbacks.early_stopping.enabled=false",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    said, runs = _ctrl_c_once_both_jobs_saved(command, tmp_path, "sweep/*/checkpoints/last.ckpt")
    assert said == ("archbench-train: sweep interrupted by SIGINT: trials 0, 1 marked FAIL, 2 of 2 trials "
                    "ended; the same command continues the study; MLflow runs marked KILLED")
    [summary] = optuna.get_all_study_summaries(store)
    trials = optuna.load_study(study_name=summary.study_name, storage=store).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}  # the parent and both trials


def test_an_interrupted_parallel_multirun_ends_its_jobs_runs_and_names_the_dir_that_continues_them(tmp_path):
    """Seeds side by side (joblib, as the text pipeline runs them): Ctrl-C kills the workers before
    they end their MLflow runs; the parent ends them KILLED and says how to go on."""
    sweep = tmp_path / "multi"
    command = ["archbench-train", "-m", "data=digits", "model=logistic", "seed=1,2", "trainer.max_epochs=5000",
               "callbacks.early_stopping.enabled=false", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               "threads=1", f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    said, runs = _ctrl_c_once_both_jobs_saved(command, tmp_path, "multi/*/checkpoints/last.ckpt")
    assert said == (f"archbench-train: interrupted: 2 unfinished job(s) in {sweep}, their MLflow runs marked "
                    f"KILLED; the same command with hydra.sweep.dir={sweep} continues them (a dvc repro stage "
                    f"continues by itself)")
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]


def test_sigterm_to_a_parallel_multiruns_parent_alone_stops_its_workers_too(tmp_path):
    """`kill PID`, `timeout`, a container stopping: SIGTERM reaches the parent only. Before, it died
    alone and its joblib workers trained on as orphans, their MLflow runs RUNNING."""
    sweep = tmp_path / "multi"
    command = ["archbench-train", "-m", "data=digits", "model=logistic", "seed=1,2", "trainer.max_epochs=5000",
               "callbacks.early_stopping.enabled=false", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               "threads=1", f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    process = _started(command, env)
    try:
        stderr = _signalled_once_an_epoch_is_saved(process, "multi/*/checkpoints/last.ckpt", tmp_path,
                                                   signal.SIGTERM, saved=2, group=False)
        assert process.returncode == 143, stderr[-2000:]
        assert stderr.strip().splitlines()[-1].startswith(
            f"archbench-train: interrupted by SIGTERM: 2 unfinished job(s) in {sweep}, their MLflow runs marked KILLED")
        deadline = time.monotonic() + 30
        while _live_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _live_processes(process.pid)  # no worker left training
    finally:  # workers a parent left behind (the bug) keep its process group: none outlives the test
        _kill_group(process.pid)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("archbench").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]
    assert {r.data.tags["interrupted"] for r in runs} == {"interrupted by SIGTERM"}


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _live_processes(session: int) -> list[str]:
    """The processes of a session that have not exited (zombies aside)."""
    listed = subprocess.run(["ps", "-s", str(session), "-o", "pid=,stat="], capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if "Z" not in line.split()[-1]]


def _ctrl_c_once_both_jobs_saved(command: list[str], tmp_path: Path, pattern: str) -> tuple[str, list]:
    """Ctrl-C to a command running two jobs side by side once both saved an epoch: exit 130; its
    last stderr line and the MLflow runs it left."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    process = _started(command, env)
    stderr = _signalled_once_an_epoch_is_saved(process, pattern, tmp_path, signal.SIGINT, saved=2)
    assert process.returncode == 130, stderr[-2000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    return stderr.strip().splitlines()[-1], client.search_runs([client.get_experiment_by_name("archbench").experiment_id])
