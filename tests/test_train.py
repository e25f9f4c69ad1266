"""``train(cfg)`` in-process on tiny budgets, tracked in a temp sqlite MLflow store."""

import importlib.util
import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from archbench.errors import IncompatibleError, NonFiniteLossError
from archbench.train import train


def _client(cfg) -> MlflowClient:
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    return MlflowClient(cfg.logger.tracking_uri)


def _runs(cfg):
    client = _client(cfg)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_cnn_on_digits_beats_chance_and_is_fully_tracked(make_cfg, tmp_path):
    cfg = make_cfg("data=digits", "model=cnn", "trainer.max_epochs=3", "logger.log_model=true")
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.5  # chance is 0.1
    assert {"test/loss", "test/acc", "test/f1", "val/acc_then_loss_best", "epochs"} <= metrics.keys()

    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    curves = (out / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,") and "val/loss" in curves[0] and len(curves) == 4
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "confusion.png").is_file()

    [run] = _runs(cfg)
    client = _client(cfg)
    assert run.info.status == "FINISHED" and run.info.run_name == "cnn-digits"
    assert run.data.params["model.net.channels"] == "[32, 64]"
    assert run.data.params["optimizer.lr"] == str(cfg.optimizer.lr)
    assert run.data.tags["data_checksum"].startswith("sha256:")
    assert run.data.tags["git_commit"]
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3  # one point per epoch
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion.png"} <= artifacts

    model = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    x = torch.load(cfg.data.dir + "/test.pt", weights_only=True)["x"][:16]
    probs = model(x)
    assert probs.shape == (16, 10)
    assert torch.allclose(probs.sum(1), torch.ones(16), atol=1e-5)
    pyfunc = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    assert pyfunc.metadata.get_input_schema() is not None
    assert np.asarray(pyfunc.predict(x.numpy())).shape == (16, 10)


def test_binary_logistic_on_breast_cancer(make_cfg):
    metrics = train(make_cfg("data=breast_cancer", "model=logistic", "trainer.max_epochs=5",
                             "optimizer.lr=0.01", "logger.log_model=false"))
    assert metrics["test/acc"] > 0.85  # majority class is 63 %


def test_perceptron_learns_and_its_checkpoint_loads_weights_only(make_cfg, tmp_path):
    metrics = train(make_cfg("data=digits", "model=perceptron", "optimizer=sgd",
                             "trainer.max_epochs=3", "logger.log_model=false"))
    assert metrics["test/acc"] > 0.5
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["loss"] == "perceptron"


def test_the_perceptron_is_averaged_and_tested_at_the_end_of_its_budget(make_cfg, tmp_path):
    """Freund & Schapire's averaged perceptron: the tested and logged weights are the mean of every
    step's weights at the last epoch (breast_cancer's validation, 100 % from the first epoch on,
    cannot rank the epochs; selection used to freeze on the first)."""
    cfg = make_cfg("data=breast_cancer", "model=perceptron", "trainer.max_epochs=4", "logger.log_model=true")
    metrics = train(cfg)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 3 and metrics["epochs"] == 4
    assert int(last["averaging_state"]["n_averaged"]) == last["global_step"]  # every step averaged
    averaged, raw = last["state_dict"], last["current_model_state"]
    assert not torch.allclose(averaged["net.linear.weight"], raw["net.linear.weight"])
    test = torch.load(cfg.data.dir + "/test.pt", weights_only=True)
    predicted = (test["x"] @ averaged["net.linear.weight"].T + averaged["net.linear.bias"]).squeeze(-1) > 0
    assert metrics["test/acc"] == pytest.approx(predicted.long().eq(test["y"]).float().mean().item())
    [run] = _runs(cfg)
    logged = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    assert torch.equal(logged(test["x"]).argmax(1).bool(), predicted)


def test_last_checkpoint_follows_every_epoch_even_when_the_monitor_stalls(make_cfg, tmp_path):
    """Resume and ``select=last`` read checkpoints/last.ckpt; Lightning 2.6's own ``save_last`` wrote
    it only in epochs that improved the monitor."""
    train(make_cfg("data=breast_cancer", "model=perceptron", "callbacks.checkpoint.select=best",
                   "trainer.max_epochs=4"))
    checkpoints = tmp_path / "run" / "checkpoints"
    best = torch.load(checkpoints / "best.ckpt", weights_only=True)
    assert best["epoch"] < 3  # the monitor stalled: validation is 100 % with a zero criterion
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 3


def test_an_unknown_checkpoint_selection_lists_the_valid_ones(make_cfg):
    from archbench.config import validate
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown callbacks.checkpoint.select 'first'; valid: best, last"):
        validate(make_cfg("callbacks.checkpoint.select=first"))


@pytest.mark.parametrize("threads", ["-2", "0", "abc"])
def test_threads_must_be_a_positive_count_or_null(make_cfg, threads):
    from archbench.config import validate
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError, match=f"threads must be an integer ≥ 1, got {threads if threads != 'abc' else repr(threads)}"):
        validate(make_cfg(f"threads={threads}"))
    validate(make_cfg("threads=null"))


def test_a_multiruns_job_configs_are_every_combination_of_its_swept_values(data_root):
    """What archbench-train checks before a multirun starts: swept plain keys set on the first job's
    config, a swept group composed per job; a single run is its own config."""
    from archbench.cli.train import _job_configs

    where = f"paths.data_dir={data_root}"
    seeds = _job_configs(["data=digits", "model=mlp", "seed=range(1,3)", "optimizer.lr=0.1,0.2", where], True)
    assert [(c.seed, c.optimizer.lr) for c in seeds] == [(1, 0.1), (1, 0.2), (2, 0.1), (2, 0.2)]
    models = _job_configs(["data=digits", "model=mlp,logistic", where], True)
    assert [(c.model.name, c.recipe_applied.file) for c in models] == [
        ("mlp", "conf/recipe/digits_mlp.yaml"), ("logistic", "conf/recipe/digits_logistic.yaml")]
    assert [c.seed for c in _job_configs(["data=digits", "seed=5", where], False)] == [5]


@pytest.mark.parametrize("override, message", [
    ("logger.tracking_uri=/some/folder", "logger.tracking_uri must be a database or server URI"),
    ("logger.tracking_uri=bogus://x", "got 'bogus://x'"),
    ("register=maybe", "register must be true or false, got 'maybe'"),
    ("callbacks.progress_bar=fancy", "unknown callbacks.progress_bar 'fancy'; valid: rich, tqdm, none"),
    ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience must be an integer ≥ 0, got -1"),
])
def test_tracking_and_callback_settings_that_cannot_work_are_refused(make_cfg, override, message):
    """Before: a plain folder or an unknown scheme failed in MLflow with a traceback; register=maybe
    registered, progress_bar=fancy and a negative patience were accepted without a word."""
    from archbench.config import validate
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(make_cfg(override))
    validate(make_cfg("logger.tracking_uri=postgresql+psycopg2://u@127.0.0.1/x"))


@pytest.mark.parametrize("override, message", [
    ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be an integer ≥ 1, got 0"),
    ("+trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch must be an integer ≥ 1, got 0"),
    ("trainer.log_every_n_steps=-1", "trainer.log_every_n_steps must be an integer ≥ 0, got -1"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be a finite number ≥ 0, got -1"),
    ("trainer.gradient_clip_val=nan", "trainer.gradient_clip_val must be a finite number ≥ 0, got nan"),
    ("callbacks.early_stopping.min_delta=nan", "callbacks.early_stopping.min_delta must be a finite number ≥ 0, got nan"),
    ("optimizer.lr=inf", "optimizer.lr must be a finite number > 0, got inf"),
    ("optimizer.weight_decay=inf", "optimizer.weight_decay must be a finite number ≥ 0, got inf"),
])
def test_numbers_lightning_takes_unchecked_are_refused(make_cfg, override, message):
    """Before: a zero accumulation or validation interval was a ZeroDivisionError mid-run; a NaN clip
    a traceback at fit; a negative clip (gradients' sign flipped), a NaN min_delta and -2 steps were
    accepted; an infinite lr or weight decay trained to a NaN loss and advice to lower the lr."""
    from archbench.config import validate
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        validate(make_cfg("data=digits", "model=mlp", override))
    assert str(caught.value) == message


def test_a_monitor_no_metric_answers_is_one_line_listing_the_logged_ones(make_cfg):
    """Lightning finds it after the first validated epoch; it was a RuntimeError traceback."""
    from archbench.errors import ConfigError

    for early_stopping in ("true", "false"):
        cfg = make_cfg("data=digits", "model=logistic", "callbacks.monitor=val/nope",
                       f"callbacks.early_stopping.enabled={early_stopping}", output=f"run-{early_stopping}")
        with pytest.raises(ConfigError, match=r"^callbacks.monitor=val/nope is not a metric this run logs: .*val/acc"):
            train(cfg)


def test_same_seed_same_metrics(make_cfg):
    overrides = ("data=digits", "model=mlp", "trainer.max_epochs=2", "logger.log_model=false")
    first = train(make_cfg(*overrides, output="a"))
    second = train(make_cfg(*overrides, output="b"))
    other = train(make_cfg(*overrides, "seed=7", output="c"))
    assert first["test/loss"] == second["test/loss"]
    assert other["test/loss"] != first["test/loss"]


def test_nan_loss_stops_the_run_and_marks_it_failed(make_cfg, tmp_path):
    cfg = make_cfg("data=digits", "model=mlp", "optimizer=sgd", "optimizer.lr=1e30")
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        train(cfg)
    [run] = _runs(cfg)
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["failure_reason"]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_incompatible_model_fails_before_any_run(make_cfg):
    cfg = make_cfg("data=breast_cancer", "model=cnn")
    with pytest.raises(IncompatibleError, match="cnn needs images"):
        train(cfg)
    assert _runs(cfg) == []


@pytest.mark.parametrize("override, message", [
    ("trainer.accelerator=tpu_v9", "invalid accelerator name: `accelerator='tpu_v9'`. Available names are: "),
    ("trainer.precision=17", "Precision 17 is invalid"),
    ("trainer.devices=0", "`Trainer(devices=0)` value is not a valid input"),
    ("+trainer.no_such_argument=1", "unexpected keyword argument 'no_such_argument'"),
    pytest.param("trainer=gpu", "No supported gpu backend found!", marks=pytest.mark.skipif(
        torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a GPU is here")),
])
def test_bad_trainer_settings_fail_in_one_line_before_anything_is_written(make_cfg, tmp_path, override, message):
    """Lightning's own check, made before the run folder, the MLflow run and the data are touched:
    an earlier run's checkpoints in the same folder survive too."""
    line = _refused_before_anything_is_written(make_cfg("data=digits", "model=mlp", override), tmp_path)
    assert line.startswith("trainer: ") and message in line
    assert line.endswith("(trainer= takes auto, cpu, ddp, ddp_cpu, gpu)")
    assert not (tmp_path / "mlflow.db").exists()


def _refused_before_anything_is_written(cfg, tmp_path) -> str:
    """``train(cfg)``'s one-line ConfigError, checking that an earlier run's checkpoint in the same
    run folder survived and that the run wrote nothing there."""
    from archbench.errors import ConfigError

    kept = tmp_path / "run" / "checkpoints" / "best.ckpt"
    kept.parent.mkdir(parents=True)
    kept.write_text("an earlier run's")
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    assert kept.read_text() == "an earlier run's" and not (tmp_path / "run" / "config.yaml").exists()
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("uri, message", [
    ("http://127.0.0.1:{port}", "no server answers at http://127.0.0.1:{port} (Connection refused); start it"),
    ("postgresql+psycopg2://archbench:secret@127.0.0.1:{port}/mlflow",
     'cannot connect to postgresql+psycopg2://archbench:***@127.0.0.1:{port}/mlflow (connection to server at '
     '"127.0.0.1", port {port} failed: Connection refused'),
    pytest.param("postgresql://archbench@127.0.0.1:{port}/mlflow",
                 "postgresql://archbench@127.0.0.1:{port}/mlflow needs the database driver 'psycopg', which is "
                 "not installed (No module named 'psycopg') (archbench's postgres extra installs psycopg2: "
                 "write postgresql+psycopg2://…)",
                 marks=pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg here")),
])
def test_a_tracking_store_that_does_not_answer_is_one_line_before_anything_is_written(
        make_cfg, tmp_path, closed_port, uri, message):
    """Before, MLflow retried a closed server port for 4 minutes (a closed PostgreSQL one for 1 min
    45 s) and raised a traceback, after the run folder's earlier checkpoints had been cleared."""
    cfg = make_cfg("data=digits", "model=logistic", f"logger.tracking_uri={uri.format(port=closed_port)}")
    line = _refused_before_anything_is_written(cfg, tmp_path)
    assert line.startswith(f"logger.tracking_uri: {message.format(port=closed_port)}")
    assert "secret" not in line


def test_a_web_server_that_is_not_mlflows_is_refused_as_a_tracking_uri(make_cfg, tmp_path):
    """Before, MLflow's 404 from another web server (Python's own, here) was a traceback, after the
    run folder had been cleared and the data prepared."""
    import sys

    from conftest import free_port, http_server

    from archbench.errors import ConfigError

    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with http_server(command, f"http://127.0.0.1:{port}/"):
        cfg = make_cfg("data=digits", "model=logistic", f"logger.tracking_uri=http://127.0.0.1:{port}")
        with pytest.raises(ConfigError) as caught:
            train(cfg)
    assert str(caught.value).startswith(
        f"logger.tracking_uri: http://127.0.0.1:{port} answers, but not as an MLflow tracking server that "
        f"takes this client (API request to endpoint /api/2.0/mlflow/experiments/search failed with error code ")
    assert "<" not in str(caught.value)  # the HTML page is not repeated
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("model=mlp model.net.hidden=[64,0]", "model mlp: layer sizes must be ≥ 1, got hidden=[64, 0]"),
    ("model=mlp model.net.hidden=[-3]", "model mlp: layer sizes must be ≥ 1, got hidden=[-3]"),
    ("model=cnn model.net.channels=[0,8]", "model.net.channels must be ≥ 1 each, got [0, 8]"),
    ("model=transformer data.layout=rows model.net.d_model=0", "model transformer: layer sizes must be ≥ 1, got d_model=0"),
])
def test_a_layer_of_size_zero_or_less_is_refused_by_name(make_cfg, tmp_path, override, message):
    """Before, hidden=[0] trained a bias-only net without a word and hidden=[-3] raised a traceback."""
    from archbench.errors import ConfigError

    cfg = make_cfg("data=digits", *override.split())
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    assert str(caught.value) == message
    assert not (tmp_path / "mlflow.db").exists()


def test_register_moves_champion_only_on_improvement(make_cfg):
    good = make_cfg("data=digits", "model=logistic", "logger.log_model=true", "trainer.max_epochs=3", "optimizer.lr=0.01",
                    "register=true", output="good")
    bad = make_cfg("data=digits", "model=logistic", "logger.log_model=true", "trainer.max_epochs=1", "optimizer.lr=1e-6",
                   "register=true", output="bad")
    train(good)
    train(bad)
    client = _client(good)
    champion = client.get_model_version_by_alias("archbench-digits-logistic", "champion")
    assert str(champion.version) == "1"
    assert len(client.search_model_versions("name='archbench-digits-logistic'")) == 2
    better = make_cfg("data=digits", "model=logistic", "logger.log_model=true", "trainer.max_epochs=6", "optimizer.lr=0.02",
                      "register=true", output="better")
    train(better)
    champion = client.get_model_version_by_alias("archbench-digits-logistic", "champion")
    assert str(champion.version) == "3"


def test_a_champion_trained_on_other_data_is_not_compared_on_scores(make_cfg):
    """Two tables under one name (data=csv's default name, here digits split another way): their
    validation scores say nothing of each other, so the newest is champion and the version says
    why. Before, a worse-scoring champion from another table kept the alias."""
    first = make_cfg("data=digits", "model=logistic", "logger.log_model=true", "trainer.max_epochs=3",
                     "optimizer.lr=0.01", "register=true", output="first")
    other = make_cfg("data=digits", "data.seed=7", "model=logistic", "logger.log_model=true",
                     "trainer.max_epochs=1", "optimizer.lr=1e-6", "register=true", output="other")
    train(first)
    train(other)
    client = _client(first)
    champion = client.get_model_version_by_alias("archbench-digits-logistic", "champion")
    assert str(champion.version) == "2"
    assert champion.tags["champion_note"].startswith("champion v1 was trained on other data")
    summary = json.loads((Path(str(other.paths.output_dir)) / "run.json").read_text())["registered"]
    assert summary["champion"] and "data.name=" in summary["note"]


def test_bidirectional_gru_and_transformer_classify_sequences(make_cfg):
    for model in ("gru", "transformer"):
        sizes = ("model.net.hidden_size=32", "model.net.bidirectional=true") if model == "gru" else (
            "model.net.d_model=32", "model.net.n_layers=1")
        metrics = train(make_cfg("data=digits", "data.layout=rows", f"model={model}", *sizes,
                                 "trainer.max_epochs=3", "optimizer.lr=0.01", "logger.log_model=false",
                                 output=model))
        assert metrics["test/acc"] > 0.3, model  # chance is 0.1


def test_lstm_reads_digit_images_row_by_row(make_cfg):
    metrics = train(make_cfg("data=digits", "data.layout=rows", "model=lstm", "model.net.hidden_size=32",
                             "trainer.max_epochs=3", "optimizer.lr=0.01", "logger.log_model=false"))
    assert metrics["test/acc"] > 0.3


@pytest.mark.slow
def test_character_language_model_trains_samples_and_generates(make_cfg, tmp_path):
    from conftest import call_cli, run_cli

    cfg = make_cfg("data=pydoc_text", "model=lstm", "logger.log_model=true", "data.steps_per_epoch=15", "trainer.max_epochs=2",
                   "model.lm_net.hidden_size=64", "model.lm_net.num_layers=1", "optimizer.lr=0.01",
                   "data.sample_length=50")
    metrics = train(cfg)
    assert {"test/loss", "test/bpc", "val/loss_best"} <= metrics.keys()
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / np.log(2), rel=1e-4)
    assert metrics["test/loss"] < np.log(100)  # better than uniform over the ~100-character vocabulary
    assert len((tmp_path / "run" / "sample.txt").read_text()) == 1 + 50  # "\\n" prompt + 50 sampled
    [run] = _runs(cfg)
    client = _client(cfg)
    assert run.data.params["callbacks.monitor"] == "val/loss"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")] == [
        "samples/epoch_000.txt", "samples/epoch_001.txt"]
    uri = run.data.tags["model_uri"]
    client.create_registered_model("archbench-pydoc_text-lstm")  # as a sweep registers its best run
    version = client.create_model_version("archbench-pydoc_text-lstm", uri, run.info.run_id)
    client.set_registered_model_alias("archbench-pydoc_text-lstm", "champion", version.version)
    result = run_cli("archbench-generate", "--registered", "pydoc_text-lstm", "--prompt", "def ", "--length", "20",
                     "--tracking-uri", cfg.logger.tracking_uri)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("def ") and len(result.stdout.rstrip("\n")) >= 20
    written = call_cli("archbench-generate", "--model-uri", uri, "--prompt", "def ", "--length", "20",
                       "--output", str(tmp_path / "sample.txt"), "--tracking-uri", cfg.logger.tracking_uri)
    assert written.returncode == 0 and (tmp_path / "sample.txt").read_text(encoding="utf-8") == result.stdout
    grid = call_cli("archbench-generate", "--model-uri", uri, "--output", str(tmp_path / "s.png"),
                    "--tracking-uri", cfg.logger.tracking_uri)  # before: ignored, the text printed
    assert grid.returncode == 2 and "is a language model: it writes text" in grid.stderr
    images_only = call_cli("archbench-generate", "--model-uri", uri, "--samples", "3",
                           "--tracking-uri", cfg.logger.tracking_uri)  # before: ignored, 300 characters printed
    assert images_only.returncode == 2 and images_only.stdout == ""
    assert "--samples: " in images_only.stderr and "is a language model, which takes --prompt" in images_only.stderr
    assert "Downloading artifacts" not in result.stderr + images_only.stderr  # MLflow's bar, once per load
    bad = call_cli("archbench-generate", "--model-uri", uri, "--prompt", "\u00e9\u00e9",
                  "--tracking-uri", cfg.logger.tracking_uri)
    assert bad.returncode == 2 and "outside the vocabulary" in bad.stderr


def test_models_without_a_language_head_refuse_text(make_cfg):
    from archbench.tasks.base import models_with

    with pytest.raises(IncompatibleError, match="model cnn has no 'lm_net'.*models that have one: "
                       + ", ".join(models_with("lm_net"))):
        train(make_cfg("data=pydoc_text", "model=cnn"))
