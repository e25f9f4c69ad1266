"""Optuna sweeps through Hydra multirun (``hparams_search=lr_wd``), real sqlite storages, real MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import mlflow
import numpy as np
import optuna
import pytest
import torch
from conftest import BIN, REPO, call_cli, run_cli
from optuna.trial import TrialState

from archbench.errors import ConfigError
from archbench.sweep.space import suggest, validate_space


def test_search_space_is_validated_and_can_include_zero():
    with pytest.raises(ConfigError, match="low > 0"):
        validate_space({"optimizer.weight_decay": {"low": 0, "high": 1e-2, "log": True}})
    with pytest.raises(ConfigError, match="low < high"):
        validate_space({"optimizer.lr": {"low": 1e-2, "high": 1e-3}})
    space = {"optimizer.weight_decay": {"low": 1e-6, "high": 1e-2, "log": True, "include_zero": True}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = [suggest(study.ask(), space)["optimizer.weight_decay"] for _ in range(40)]
    assert 0.0 in values and any(1e-6 <= v <= 1e-2 for v in values)


def _sweep_args(tmp_path, *extra: str, trials: int = 4) -> tuple[list[str], dict]:
    args = ["archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
            "trainer.max_epochs=3", f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
            f"paths.data_dir={tmp_path / 'data'}", f"paths.output_root={tmp_path / 'outputs'}", *extra]
    return args, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def _study(tmp_path) -> optuna.Study:
    [summary] = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna.db'}")
    return optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def _runs(tmp_path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("archbench").experiment_id])


def test_study_plots_say_their_caveats_in_one_line_each(tmp_path, capsys, recwarn):
    """Before, Optuna's importance caveat leaked as a UserWarning with its source line mid-sweep."""
    from archbench.sweep.study import write_study_artifacts

    lr = optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)
    zero, wd = optuna.distributions.CategoricalDistribution((False, True)), optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True)
    study = optuna.create_study(direction="maximize")
    for value, params in [(0.95, {"lr": 8e-4, "wd=0": False, "wd": 2e-4}), (0.90, {"lr": 2e-4, "wd=0": False, "wd": 9e-6}),
                          (0.99, {"lr": 1e-2, "wd=0": True})]:
        spaces = {"lr": lr, "wd=0": zero, "wd": wd}
        study.add_trial(optuna.trial.create_trial(params=params, value=value,
                                                  distributions={k: spaces[k] for k in params}))
    written = write_study_artifacts(study, tmp_path)
    assert {p.name for p in written} == {"trials.csv", "optimization_history.png", "param_importances.png"}
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    assert "archbench-sweep: param_importances.png: Some regimes for parameter `wd` have less than 2 trials" in capsys.readouterr().out


def test_a_study_is_its_data_and_config_not_where_or_how_it_runs():
    """Before, the name hashed the search space only: a sweep of another table (data=csv), model
    size or epoch budget silently continued the first one's study and reported its best trial."""
    from archbench.config import compose
    from archbench.sweep.runner import _experiment
    from archbench.sweep.study import study_name

    space = {"optimizer.lr": {"low": 1e-4, "high": 3e-2, "log": True}}

    def name(*overrides: str, checksum: str = "sha256:wine") -> str:
        cfg = compose(["data=csv", "data.path=/data/wine.csv", "data.target=cultivar", "model=mlp", *overrides])
        return study_name("csv", "mlp", space, _experiment(cfg, space, checksum))

    same = name()
    for where_or_searched in ("data.path=/elsewhere/wine.csv", "threads=1", "trainer.devices=2",
                              "trainer.strategy=ddp", "callbacks.progress_bar=none", "optimizer.lr=0.5"):
        assert name(where_or_searched) == same, where_or_searched
    assert name(checksum="sha256:iris") != same
    for what in ("trainer.max_epochs=7", "model.net.hidden=[8]", "data.seed=1", "data.batch_size=8",
                 "optimizer=sgd", "optimizer.weight_decay=0.1", "seed=1", "callbacks.early_stopping.patience=3"):
        assert name(what) != same, what


def test_a_sweep_on_your_own_table_reads_its_task_from_the_data(tmp_path):
    """data=csv leaves the task to the data (data.task=auto); before, the sweep stopped at "no task:
    set data.task" before its first trial."""
    from sklearn.datasets import load_wine

    load_wine(as_frame=True).frame.to_csv(tmp_path / "wine.csv", index=False)
    args, env = _sweep_args(tmp_path, "data=csv", f"data.path={tmp_path / 'wine.csv'}", "data.target=target",
                            "trainer.max_epochs=1", trials=1)
    result = call_cli(*[a for a in args if a != "data=digits"], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "objective maximize val/acc_then_loss_best" in result.stdout
    [trial] = _study(tmp_path).trials
    assert trial.state == TrialState.COMPLETE and 0 <= trial.value <= 1


def test_a_sweep_of_no_trials_is_refused_before_its_study_exists(tmp_path):
    """Before, n_trials=0 created the study, an MLflow parent run and an empty plot, exit 0."""
    args, env = _sweep_args(tmp_path, trials=0)
    result = call_cli(*args, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == ("archbench-train: error: hydra.sweeper.n_trials must be ≥ 1 "
                                     "(the study's whole budget), got 0")
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("override, message", [
    pytest.param("trainer=gpu", "trainer: No supported gpu backend found!", marks=pytest.mark.skipif(
        torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a GPU is here")),
    ("hydra.sweeper.storage=postgresql+psycopg2://optuna@127.0.0.1:{port}/optuna",
     "hydra.sweeper.storage: cannot connect to postgresql+psycopg2://optuna@127.0.0.1:{port}/optuna "
     '(connection to server at "127.0.0.1", port {port} failed: Connection refused'),
    ("logger.tracking_uri=http://127.0.0.1:{port}", "logger.tracking_uri: no server answers at "
                                                    "http://127.0.0.1:{port} (Connection refused)"),
])
def test_a_sweep_that_no_trial_could_run_is_refused_before_its_study_exists(tmp_path, closed_port, override,
                                                                             message):
    """Before, trainer=gpu on a machine without one created the study and its MLflow parent run, then
    failed every trial (exit 4); a closed database port was a traceback, a closed tracking server
    one after minutes of MLflow's retries."""
    args, env = _sweep_args(tmp_path, override.format(port=closed_port))
    result = call_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"archbench-train: error: {message.format(port=closed_port)}")
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_sweep_runs_n_trials_nests_runs_registers_and_continues(tmp_path):
    args, env = _sweep_args(tmp_path, "hydra.sweeper.pruner.name=none")
    result = call_cli(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    study = _study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(len(t.intermediate_values) == 3 for t in study.trials)  # one report per epoch
    runs = _runs(tmp_path)
    [parent] = [r for r in runs if r.data.tags.get("archbench.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1", "2", "3"]
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == [
        f"logistic-digits-t00{i}" for i in range(4)]  # readable: which trial is which
    assert {r.data.tags["optuna.trial_state"] for r in children} == {"COMPLETE"}
    lrs = {float(r.data.params["optimizer.lr"]) for r in children}
    assert len(lrs) == 4  # each trial trained with its own suggested value
    assert parent.data.metrics["sweep/best_value"] == pytest.approx(study.best_value)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "optimization_history.png"} <= artifacts
    champion = client.get_model_version_by_alias("archbench-digits-logistic", "champion")
    assert champion.run_id == study.best_trial.user_attrs["mlflow_run_id"]

    # the same command continues the study: nothing runs twice, nothing is registered twice
    again = call_cli(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_study(tmp_path).trials) == 4 and len(_runs(tmp_path)) == 5
    assert len(client.search_model_versions("name='archbench-digits-logistic'")) == 1
    # continued against another MLflow store, where its runs are not: said, not a traceback
    elsewhere = call_cli(*args, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"})
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert f"not registered: the best trial's run {study.best_trial.user_attrs['mlflow_run_id']} is not in" in elsewhere.stdout

    # the predict CLI classifies a .npy file with the champion
    test = torch.load(tmp_path / "data" / "digits" / "test.pt", weights_only=True)
    np.save(tmp_path / "x.npy", test["x"][:50].numpy())
    predicted = call_cli("archbench-predict", str(tmp_path / "x.npy"), "--registered", "digits-logistic",
                         "--tracking-uri", env["MLFLOW_TRACKING_URI"])
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    lines = predicted.stdout.strip().splitlines()
    assert lines[0] == "index,label,probability,top" and len(lines) == 51
    labels = [int(line.split(",")[1]) for line in lines[1:]]
    assert np.mean(np.array(labels) == test["y"][:50].numpy()) > 0.7


@pytest.mark.slow
def test_failing_and_hopeless_trials_end_fail_and_pruned_and_the_sweep_goes_on(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args, env = _sweep_args(tmp_path, "hydra.sweeper.pruner.name=median",
                            "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0",
                            "hydra.sweeper.study_name=forced", "trainer.max_epochs=4", trials=3)
    study = optuna.create_study(study_name="forced", storage=storage, direction="maximize")
    no_decay = {"optimizer.weight_decay=0": True}
    study.enqueue_trial({"optimizer.lr": 0.03, **no_decay})  # a good baseline
    study.enqueue_trial({"optimizer.lr": 1e-6, **no_decay}, skip_if_exists=False)  # learns nothing
    # Adam's first step is lr / (1 - β1) = 1e38 per weight: float32 logits overflow, the loss is NaN
    study.enqueue_trial({"optimizer.lr": 1e37, **no_decay}, skip_if_exists=False)
    result = call_cli(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert len(trials[1].intermediate_values) < 4  # stopped before its last epoch
    assert "NonFiniteLossError" in trials[2].user_attrs["reason"]
    by_trial = {r.data.tags.get("optuna.trial_number"): r for r in _runs(tmp_path)}
    assert by_trial["1"].info.status == "KILLED" and by_trial["1"].data.tags["optuna.trial_state"] == "PRUNED"
    assert by_trial["2"].info.status == "FAILED" and by_trial["2"].data.tags["optuna.trial_state"] == "FAIL"
    assert "non-finite" in by_trial["2"].data.tags["failure_reason"]
    # neither a pruned nor a failed trial gets Hydra's traceback banner; the failure is one line
    assert "Error executing job" not in result.stderr, result.stderr[-3000:]
    assert "Heartbeat of storage" not in result.stderr
    assert "archbench-train: error: job 2: non-finite training loss" in result.stderr
    summary = json.loads(next(tmp_path.rglob("sweep.json")).read_text())
    assert summary["best_params"] == {"optimizer.lr": 0.03, "optimizer.weight_decay": 0.0}


@pytest.mark.slow
def test_parallel_workers_share_one_study_and_make_exactly_n_trials(tmp_path):
    """Two processes, one command: the same sqlite Optuna storage and MLflow store, no lock errors."""
    args, env = _sweep_args(tmp_path, "hydra.sweeper.pruner.name=none", "trainer.max_epochs=2")
    full_env = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # prepare once so both workers start training at the same time
    assert run_cli("archbench-prepare", "digits", f"paths.data_dir={tmp_path / 'data'}").returncode == 0
    workers = [subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=REPO, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=400) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "database is locked" not in err
    trials = _study(tmp_path).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["optimizer.lr"] for t in trials}) == 4
    both_ran = [out.count("archbench-sweep: trial ") for out, _ in outputs]
    assert sum(both_ran) == 4 and min(both_ran) >= 1, both_ran
    children = [r for r in _runs(tmp_path) if r.data.tags.get("optuna.trial_number")]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    # the study's parent run and summary describe the whole study, closed by the last worker
    [parent] = [r for r in _runs(tmp_path) if r.data.tags.get("archbench.sweep") == "parent"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/trials"] == 4
    assert parent.data.metrics["sweep/complete"] == 4
    summaries = [json.loads(p.read_text()) for p in tmp_path.rglob("sweep.json")]
    assert summaries and all(s["trials"] == 4 and s["complete"] == 4 for s in summaries), summaries
    assert sum("the last to finish closes the study" in out for out, _ in outputs) <= 1


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_resumes_to_exactly_n_trials(tmp_path):
    # trial 0 cannot end before the kill (40 epochs took 3.5 s: CI once killed it after its
    # training ended, before Optuna was told)
    args, env = _sweep_args(tmp_path, "hydra.sweeper.pruner.name=none", "trainer.max_epochs=5000",
                            "callbacks.early_stopping.enabled=false",
                            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",
                            trials=2)
    full_env = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    said = (tmp_path / "sweep.err").open("w")
    sweep = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=REPO, env=full_env,
                             stdout=subprocess.DEVNULL, stderr=said, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:  # wait until trial 0 is training
        time.sleep(1)
        if sweep.poll() is not None:  # say why at once, not after the deadline
            pytest.fail(f"the sweep ended (exit {sweep.returncode}) before its first trial trained: "
                        f"{(tmp_path / 'sweep.err').read_text()[-3000:]}")
        try:
            trials = _study(tmp_path).trials
        except (ValueError, KeyError, RuntimeError, optuna.exceptions.StorageInternalError):
            continue
        if trials and trials[0].state == TrialState.RUNNING and trials[0].intermediate_values:
            break
    else:
        pytest.fail(f"the first trial never started: {(tmp_path / 'sweep.err').read_text()[-3000:]}")
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    assert _study(tmp_path).trials[0].state == TrialState.RUNNING  # orphaned by the kill
    time.sleep(4)  # past the grace period: its heartbeat is stale

    # a shorter budget is another experiment (its own study) unless the study is named
    shorter = [a.replace("trainer.max_epochs=5000", "trainer.max_epochs=3") for a in args]
    resumed = call_cli(*shorter, f"hydra.sweeper.study_name={_study(tmp_path).study_name}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    statuses = {r.data.tags.get("optuna.trial_number"): r.info.status for r in _runs(tmp_path)}
    assert statuses["0"] == "FAILED" and statuses["1"] == "FINISHED"  # no run left RUNNING


def test_a_trial_whose_sweep_died_after_training_is_tagged_fail_on_its_finished_run(tmp_path):
    """A kill between the end of training and ``study.tell`` leaves the run FINISHED and the trial
    stale; the next sweep tags the run FAIL (its result never reached Optuna) and leaves told runs alone."""
    from archbench.sweep.runner import Tracking

    tracking = Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "archbench")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    runs = {}
    for state in ("RUNNING", "FINISHED", "told"):
        run_id = tracking.client.create_run(tracking.experiment_id).info.run_id
        trial = study.ask()
        trial.set_user_attr("mlflow_run_id", run_id)
        if state == "told":
            tracking.client.set_tag(run_id, "optuna.trial_state", "FAIL")
        if state != "RUNNING":
            tracking.client.set_terminated(run_id, "FINISHED")
        study.tell(trial, state=TrialState.FAIL)
        runs[state] = run_id
    tracking.fail_orphans(study)
    got = {state: tracking.client.get_run(run_id) for state, run_id in runs.items()}
    assert got["RUNNING"].info.status == "FAILED"
    assert got["FINISHED"].info.status == "FINISHED"  # the training did finish: its model stays valid
    assert got["FINISHED"].data.tags["optuna.trial_state"] == "FAIL"
    assert "before Optuna recorded its result" in got["FINISHED"].data.tags["failure_reason"]
    assert "failure_reason" not in got["told"].data.tags
