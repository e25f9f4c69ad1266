"""A training killed with SIGKILL resumes from its last checkpoint and ends where an
uninterrupted run with the same seed ends; its MLflow run is continued, not orphaned."""

import json
import os
import signal
import subprocess
import time

import mlflow
import pytest
from conftest import BIN, call_cli

from archbench.tasks.callbacks import TrainingClock

pytestmark = pytest.mark.slow


def _command(tmp_path, run_dir):
    return ["data=digits", "model=cnn", "data.batch_size=16", "trainer.max_epochs=5",
            "callbacks.progress_bar=none", "callbacks.early_stopping.enabled=false",
            "logger.log_model=false", f"paths.data_dir={tmp_path / 'prepared'}",
            f"hydra.run.dir={run_dir}"]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert call_cli("archbench-train", *_command(tmp_path, whole), env=env).returncode == 0

    process = subprocess.Popen([str(BIN / "archbench-train"), *_command(tmp_path, killed)],
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # well into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists()
    run_id = json.loads((killed / "run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    assert mlflow.get_run(run_id).info.status == "RUNNING"

    before_kill = TrainingClock.seconds_in(killed / "checkpoints" / "last.ckpt")
    assert before_kill > 0
    again = call_cli("archbench-train", *_command(tmp_path, killed), env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads((killed / "metrics.json").read_text())
    reference = json.loads((whole / "metrics.json").read_text())
    for key in ("test/loss", "test/acc", "val/acc_then_loss_best", "epochs"):
        assert resumed[key] == reference[key], key
    # the reported training time covers the epochs before the kill as well
    assert resumed["train_seconds"] > before_kill
    # re-running the finished run (as a re-run DVC stage does) re-tests it and keeps its time
    assert call_cli("archbench-train", *_command(tmp_path, whole), env=env).returncode == 0
    # (the checkpoint's clock stops at its last save, a hair before the first fit's end)
    assert json.loads((whole / "metrics.json").read_text())["train_seconds"] >= 0.9 * reference["train_seconds"]
    assert (killed / "curves.csv").read_text() == (whole / "curves.csv").read_text()

    runs = mlflow.search_runs(experiment_names=["archbench"])
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    continued = mlflow.get_run(run_id)
    assert continued.data.tags["resumed_from"].endswith("last.ckpt")
    assert json.loads((killed / "run.json").read_text())["run_id"] == run_id


def test_explicit_resume_of_an_empty_directory_is_refused(tmp_path):
    result = call_cli("archbench-train", "data=digits", f"resume={tmp_path}",
                     f"paths.data_dir={tmp_path / 'prepared'}",
                     env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert result.returncode == 2
    assert f"nothing to resume in {tmp_path}" in result.stderr


def test_explicit_resume_of_an_unreadable_checkpoint_says_so(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short by a full disk")
    (tmp_path / "run.json").write_text("{}")
    result = call_cli("archbench-train", "data=digits", f"resume={tmp_path}",
                      f"paths.data_dir={tmp_path / 'prepared'}",
                      env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert result.returncode == 2
    assert f"{tmp_path / 'checkpoints' / 'last.ckpt'} cannot be read (truncated" in result.stderr


def test_resume_by_run_directory_continues_in_place(tmp_path):
    """``resume=<run dir>`` as the README says: the killed run is continued in its own directory to
    the uninterrupted result, its MLflow run ends FINISHED, and no stray run folder is left."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    common = [a for a in _command(tmp_path, tmp_path) if not a.startswith("hydra.run.dir")]
    common.append(f"paths.output_root={tmp_path / 'out'}")
    assert call_cli("archbench-train", *common, f"hydra.run.dir={tmp_path / 'whole'}", env=env).returncode == 0
    process = subprocess.Popen([str(BIN / "archbench-train"), *common], env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "out").glob("runs/*/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [killed] = [p.parents[1] for p in (tmp_path / "out").glob("runs/*/*/checkpoints/last.ckpt")]
    again = call_cli("archbench-train", *common, f"resume={killed}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads((killed / "metrics.json").read_text())
    reference = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    for key in ("test/loss", "test/acc", "val/acc_then_loss_best", "epochs"):
        assert resumed[key] == reference[key], key
    assert [p for p in (tmp_path / "out").glob("runs/*/*") if p.is_dir()] == [killed]  # no stray folder
    run = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(json.loads((killed / "run.json").read_text())["run_id"])
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
