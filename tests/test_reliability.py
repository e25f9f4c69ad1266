"""First-hour defects and rough edges: exact input shapes in predict, test metrics logged once,
pruning that never discards a finished trial, a quiet console that ends with a summary, MLflow's
model-training view, group-readable prepared data, and mnist1d's generator arguments."""

from __future__ import annotations

import json
import os
import re
import stat
from types import SimpleNamespace

import mlflow
import numpy as np
import optuna
import pytest
import torch
from conftest import call_cli, run_cli

from archbench.config import compose
from archbench.data.sources.mnist1d import DEFAULTS
from archbench.errors import RunStopped
from archbench.sweep.pruning import OptunaPruning
from archbench.sweep.study import chosen_values
from archbench.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits cnn and a tiny character LSTM, each logged to one MLflow store."""
    from archbench.config import compose as make

    root = tmp_path_factory.mktemp("trained")
    common = [f"paths.data_dir={root / 'prepared'}", f"paths.output_root={root / 'out'}",
              f"logger.tracking_uri=sqlite:///{root / 'mlflow.db'}", "callbacks.progress_bar=none",
              "trainer.max_epochs=1"]
    train(make(["data=digits", "model=cnn", *common], output_dir=root / "cnn"))
    train(make(["data=pydoc_text", "model=lstm", "data.steps_per_epoch=3", "model.lm_net.hidden_size=16",
                "model.lm_net.num_layers=1", "data.sample_length=5", *common], output_dir=root / "lm"))
    return root


def _uri(root, name: str) -> str:
    return json.loads((root / name / "run.json").read_text())["model_uri"]


def _predict(root, *args: str):
    return call_cli("archbench-predict", *args, "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}")


@pytest.mark.slow
def test_predict_takes_exactly_the_models_input_shape(trained, tmp_path):
    digits = torch.load(trained / "prepared" / "digits" / "test.pt", weights_only=True)["x"]
    np.save(tmp_path / "ok.npy", digits[:5].numpy())
    np.save(tmp_path / "one.npy", digits[0].numpy())  # a single sample, no batch axis
    np.save(tmp_path / "seq.npy", np.zeros((1000, 1, 40), dtype=np.float32))  # 40 000 values: divisible by 64
    ok = _predict(trained, str(tmp_path / "ok.npy"), "--model-uri", _uri(trained, "cnn"))
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 6, ok.stderr[-2000:]
    one = _predict(trained, str(tmp_path / "one.npy"), "--model-uri", _uri(trained, "cnn"))
    assert one.returncode == 0 and len(one.stdout.strip().splitlines()) == 2
    wrong = _predict(trained, str(tmp_path / "seq.npy"), "--model-uri", _uri(trained, "cnn"))
    assert wrong.returncode == 2 and wrong.stdout == ""
    [line] = wrong.stderr.strip().splitlines()
    assert "input of shape [1000, 1, 40]" in line and "(N, 1, 8, 8)" in line


@pytest.mark.slow
def test_predict_refuses_a_language_model_in_one_line(trained, tmp_path):
    np.save(tmp_path / "ids.npy", np.zeros((2, 64), dtype=np.int64))
    result = _predict(trained, str(tmp_path / "ids.npy"), "--model-uri", _uri(trained, "lm"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "is a language_model model, not a classifier or regressor" in line and "archbench-generate" in line
    # and archbench-generate refuses the classifier, naming what it is
    result = call_cli("archbench-generate", "--model-uri", _uri(trained, "cnn"), "--output", str(tmp_path / "g.png"),
                      "--tracking-uri", f"sqlite:///{trained / 'mlflow.db'}")
    assert result.returncode == 2 and not (tmp_path / "g.png").exists()
    assert result.stderr.strip().endswith("is a classification model, not a language model or an image generator "
                                          "(use archbench-predict for a classifier)"), result.stderr[-2000:]


@pytest.mark.parametrize(("inputs", "expected"), [
    (["--text", "a fine film"], "classifies digits inputs, not raw text"),
    (["in.txt"], "classifies digits inputs, not raw text"),
    (["voice.wav"], "classifies prepared tensors (.npy, .csv, .pt), not recordings"),
    (["x.json"], "unsupported input type '.json'; valid: .npy, .csv, .pt"),
    (["x.npy", "--text", "a fine film"], "give either an INPUT file or --text"),
    ([], "give an INPUT file (.npy, .csv, .pt, .txt) or --text"),
])
def test_predict_refuses_inputs_a_tensor_classifier_cannot_read_in_one_line(trained, tmp_path, monkeypatch,
                                                                            inputs, expected):
    monkeypatch.chdir(tmp_path)
    for name in ("in.txt", "voice.wav", "x.json", "x.npy"):
        (tmp_path / name).write_bytes(b"a fine film\n")
    result = _predict(trained, *inputs, "--model-uri", _uri(trained, "cnn"))
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("archbench-predict: error: ") and expected in line


def _nan_sample(path):
    x = np.zeros((3, 1, 8, 8), dtype=np.float32)
    x[2, 0, 1, 1] = np.inf
    np.save(path, x)


@pytest.mark.parametrize(("name", "write", "expected"), [
    ("junk.npy", lambda p: p.write_text("junk"), "not a NumPy .npy file (no NumPy header)"),
    ("objects.npy", lambda p: np.save(p, np.array([{}], dtype=object), allow_pickle=True),
     "cannot read it as .npy: Object arrays cannot be loaded when allow_pickle=False"),
    ("junk.pt", lambda p: p.write_text("junk"), "cannot read it as .pt: "),
    ("header.csv", lambda p: p.write_text("a,b\n1,2\n"), "holds rows by column name, and "),
    ("words.csv", lambda p: p.write_text("1,2\n3,x\n"), "could not convert string 'x' to float64 at row 1, "
     "column 2. (numbers only, one flattened sample a row, no header)"),
    ("empty.csv", lambda p: p.write_text(""), "empty.csv: no samples in it"),
    ("empty.npy", lambda p: np.save(p, np.zeros((0, 1, 8, 8), dtype=np.float32)), "empty.npy: no samples in it"),
    ("inf.npy", _nan_sample, "inf.npy: NaN or infinite values (sample 2); the model reads finite numbers"),
])
def test_predict_refuses_unreadable_empty_and_non_finite_inputs_in_one_line(trained, tmp_path, name, write, expected):
    """Before: tracebacks (header.csv, junk.npy, junk.pt), a header-only answer and exit 0 (empty.npy),
    nan probabilities and exit 0 (a NaN input)."""
    write(tmp_path / name)
    result = _predict(trained, str(tmp_path / name), "--model-uri", _uri(trained, "cnn"))
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("archbench-predict: error: ") and expected in line


def test_test_metrics_are_logged_once(trained):
    run_id = json.loads((trained / "cnn" / "run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{trained / 'mlflow.db'}")
    for key in ("test/acc", "test/loss", "test/f1"):
        assert len(client.get_metric_history(run_id, key)) == 1, key
    assert len(client.get_metric_history(run_id, "val/acc_then_loss_best")) == 1


def test_archbench_experiments_open_in_the_model_training_view(trained):
    client = mlflow.MlflowClient(f"sqlite:///{trained / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("archbench")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_prepared_data_is_readable_as_the_umask_allows(trained):
    mode = (trained / "prepared" / "digits").stat().st_mode
    expected = 0o777 & ~_umask()
    assert stat.S_IMODE(mode) == expected and mode & stat.S_IRGRP == expected & stat.S_IRGRP


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def _trainer(epoch: int, max_epochs: int) -> SimpleNamespace:
    return SimpleNamespace(sanity_checking=False, global_rank=0, current_epoch=epoch, max_epochs=max_epochs,
                           callback_metrics={"val/acc": torch.tensor(0.5)}, should_stop=False,
                           strategy=SimpleNamespace(broadcast=lambda value, src: value))


def test_pruning_never_discards_a_trial_that_reached_its_last_epoch(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=storage, study_name="s", pruner=_AlwaysPrune(), direction="maximize")
    trial = study.ask()
    callback = OptunaPruning(storage, "s", trial._trial_id, "val/acc")
    callback._trial = trial  # the always-pruning pruner (storages do not keep pruners)
    last = _trainer(epoch=2, max_epochs=3)
    callback.on_validation_end(last, None)
    assert not last.should_stop
    callback.after_fit(3)  # complete: no RunStopped
    early = _trainer(epoch=0, max_epochs=3)
    callback.on_validation_end(early, None)
    assert early.should_stop
    with pytest.raises(RunStopped, match="pruned after epoch 1"):
        callback.after_fit(1)


def test_best_params_show_the_values_used():
    assert chosen_values({"optimizer.lr": 0.01, "optimizer.weight_decay=0": True,
                          "optimizer.weight_decay": 1e-4}) == {"optimizer.lr": 0.01, "optimizer.weight_decay": 0.0}
    assert chosen_values({"optimizer.lr": 0.01, "optimizer.weight_decay=0": False,
                          "optimizer.weight_decay": 1e-4}) == {"optimizer.lr": 0.01, "optimizer.weight_decay": 1e-4}


def test_mnist1d_generator_arguments_are_all_in_the_config():
    generate = dict(compose(["data=mnist1d"]).data.generate)
    assert set(generate) == set(DEFAULTS)
    assert {k: (list(v) if isinstance(v, list) or hasattr(v, "__len__") and not isinstance(v, str) else v)
            for k, v in generate.items()} == DEFAULTS
    # overridable without +
    assert compose(["data=mnist1d", "data.generate.shuffle_seq=true"]).data.generate.shuffle_seq is True


def test_a_shift_on_shuffled_sequences_is_warned_about(make_cfg):
    with pytest.warns(UserWarning, match="shift has no meaning there"):
        train(make_cfg("data=mnist1d", "model=logistic", "data.generate.shuffle_seq=true",
                       "data.generate.num_samples=500", "data.augment_shift=0.1", "trainer.max_epochs=1"))


@pytest.mark.slow
def test_a_run_is_quiet_and_ends_with_a_summary(tmp_path):
    # batches of 256: 6 an epoch, fewer than Lightning's logging interval, which it warns about
    common = ["data=digits", "model=mlp", "trainer.max_epochs=1", "data.batch_size=256", f"paths.data_dir={tmp_path / 'p'}",
              f"paths.output_root={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = run_cli("archbench-train", *common, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    for noise in ("exists and is not empty", "LeafSpec", "litlogger", "Modules in train mode",
                  "GPU available", "Total params", "smaller than the logging interval"):
        assert noise not in output, noise
    summary = result.stdout[result.stdout.index("archbench: mlp on digits (classification) finished"):]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert f"run directory  {tmp_path / 'run'}" in summary and run["run_id"] in summary
    assert "test           acc " in summary and "best val       epoch " in summary
    assert re.search(r"best val       epoch \d+: acc 0\.\d+, f1 0\.\d+, loss \d\.\d+ \(kept by acc, ties by loss\)", summary)
    assert "model          models:/" in summary
    verbose = run_cli("archbench-train", *common[:-1], f"hydra.run.dir={tmp_path / 'run2'}", "-v", env=env)
    assert verbose.returncode == 0 and "GPU available" in verbose.stdout + verbose.stderr


@pytest.mark.slow
def test_recipe_null_is_the_documented_way_to_drop_a_recipe():
    result = run_cli("archbench-train", "data=mnist1d", "model=transformer", "recipe=null", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "archbench: recipe" not in result.stdout and "  name: adam\n" in result.stdout


def test_a_rerun_with_changed_code_retrains_and_always_writes_its_curves(make_cfg, tmp_path, monkeypatch):
    """A finished run (metrics.json there, same config and code) is not redone; without its
    metrics and curves it resumes the finished checkpoint (re-tests it) and writes the curves;
    with changed code it starts afresh, so a stage re-run for a code change trains with that code."""
    import archbench.resume

    cfg = make_cfg("data=digits", "model=logistic", "trainer.max_epochs=2")
    train(cfg)
    first = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    before = (tmp_path / "run" / "metrics.json").read_text()
    assert train(make_cfg("data=digits", "model=logistic", "trainer.max_epochs=2")) == json.loads(before)
    assert (tmp_path / "run" / "metrics.json").read_text() == before  # kept as it was
    (tmp_path / "run" / "curves.csv").unlink()
    (tmp_path / "run" / "metrics.json").unlink()
    train(make_cfg("data=digits", "model=logistic", "trainer.max_epochs=2"))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["run_id"] == first  # resumed
    assert len((tmp_path / "run" / "curves.csv").read_text().splitlines()) == 3  # header + 2 epochs
    monkeypatch.setattr(archbench.resume, "code_fingerprint", lambda: "other code")
    train(make_cfg("data=digits", "model=logistic", "trainer.max_epochs=2"))
    again = json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    assert again != first
    tags = mlflow.MlflowClient(cfg.logger.tracking_uri).get_run(again).data.tags
    assert "resumed_from" not in tags


def test_use_threads_sets_the_count_and_makes_the_first_vector_math_call(monkeypatch):
    """archbench.threads.use_threads, which train() calls before anything else computes: the thread
    count, then one throwaway MKL vector-math call; every task module's setup and the prediction
    CLIs' model loading make it too. (Measured, 2 threads: the first tanh/exp/erf of a process gave
    other last bits in 4 of 24 idle processes — too rare and load-dependent for a test to catch,
    0 of 24 with four started at once — and 0 of 36 after such a call; a same-seed digits GAN ended
    on other bits in 2 of 9 runs before, 0 of 18 after.)"""
    from archbench.threads import use_threads

    calls = []
    real_tanh = torch.tanh
    monkeypatch.setattr(torch, "tanh", lambda x: calls.append(x.numel()) or real_tanh(x))
    before = torch.get_num_threads()
    try:
        use_threads(1)
        assert torch.get_num_threads() == 1 and calls == [16]
        use_threads(None)  # torch's count stays; the call still happens
        assert torch.get_num_threads() == 1 and calls == [16, 16]
        from archbench.nets.linear import Logistic
        from archbench.tasks.classification import ClassificationTask

        ClassificationTask(Logistic([2], 2), num_classes=2).setup("fit")  # every process, DDP spawn's too
        assert calls == [16, 16, 16]
        import mlflow.pytorch

        from archbench.cli.common import load_torch_model

        loaded = object()
        monkeypatch.setattr(mlflow.pytorch, "load_model", lambda uri, map_location: loaded)
        assert load_torch_model("models:/x@champion") is loaded and calls == [16, 16, 16, 16]
    finally:
        torch.set_num_threads(before)
