"""Entry points as a user runs them: exit codes and one-line errors."""

import re

import pytest
from conftest import call_cli, run_cli

from archbench.config import config_groups

pytestmark = pytest.mark.slow  # every test here starts the console scripts in subprocesses


@pytest.fixture
def isolated(tmp_path):
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


@pytest.fixture
def train_cli(tmp_path, isolated):
    """archbench-train with every store (runs, data, MLflow) under tmp_path."""

    def run(*args: str):
        return run_cli("archbench-train", *args, f"paths.output_root={tmp_path / 'outputs'}",
                       f"paths.data_dir={tmp_path / 'prepared'}", env=isolated)

    return run


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_model_lists_valid_models(isolated):
    line = _one_line_error(run_cli("archbench-train", "model=nope", env=isolated))
    assert "unknown model 'nope'" in line
    for name in ("cnn", "lenet5", "logistic", "mlp", "perceptron"):
        assert name in line


def test_unknown_dataset_lists_valid_datasets(isolated):
    line = _one_line_error(run_cli("archbench-train", "data=cifar", env=isolated))
    assert "valid: " + ", ".join(config_groups()["data"]) in line


def test_missing_mnist_files_are_named(train_cli, tmp_path):
    line = _one_line_error(train_cli("data=mnist", "data.root=/nowhere"))
    assert "t10k-images-idx3-ubyte.gz" in line and "/nowhere" in line
    assert not (tmp_path / "prepared" / "mnist").exists()


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=abc", "optimizer.lr must be a number"),
    ("trainer.max_epochs=-1", "trainer.max_epochs must be an integer ≥ 1"),
    ("data.batch_size=0", "data.batch_size must be an integer ≥ 1"),
    ("data.val_fraction=1", "data.val_fraction must be a number strictly between 0 and 1"),
    ("model.net.dropout=1.5", "model cnn: dropout probability has to be between 0 and 1, but got 1.5"),
    ("model=mlp model.net.dropout=1.5", "model.net.dropout must be a number in [0, 1), got 1.5"),
    ("no_such_key=1", "no_such_key"),
])
def test_bad_values_get_one_clear_line(train_cli, tmp_path, override, message):
    assert message in _one_line_error(train_cli(*override.split()))
    assert not list((tmp_path / "outputs").rglob("metrics.json"))
    assert not (tmp_path / "mlflow.db").exists()


def test_a_multirun_with_a_bad_value_in_one_job_starts_none(tmp_path, isolated):
    """Every job's config is composed and checked before the first starts; before, the good seed
    trained, then the bad one raised a traceback, exit 1."""
    result = call_cli("archbench-train", "-m", "replicas=seeds", "data=digits", "model=logistic", "seed=1,a",
                      f"paths.data_dir={tmp_path / 'prepared'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      env=isolated)
    assert _one_line_error(result) == "archbench-train: error: seed must be an integer ≥ 0, got 'a'"
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "prepared").exists()


def test_a_multirun_job_that_fails_on_its_data_lets_the_others_finish_and_exits_2(tmp_path, isolated):
    """Hydra re-raises a failed job's error once all have run: exit 2, each failure said in its own
    line, no traceback (before: a traceback and exit 1)."""
    sweep = tmp_path / "sweep"
    result = call_cli("archbench-train", "-m", "data=digits,mnist", "model=logistic", "trainer.max_epochs=1",
                      f"paths.root={tmp_path}", f"paths.data_dir={tmp_path / 'prepared'}",
                      f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${data.name}", env=isolated)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "archbench-train: error: job 1: MNIST files not found in " in result.stderr
    assert "Traceback" not in result.stderr
    assert (sweep / "digits" / "metrics.json").is_file()  # the good job finished
    assert re.search(r"^archbench: job 0: logistic on digits \(seed \d+\): test acc 0\.\d+, f1 ", result.stdout, re.M)


@pytest.mark.parametrize("mode", ["-m", "hydra.mode=MULTIRUN"])
def test_a_multirun_by_either_spelling_is_checked_before_its_first_job(tmp_path, isolated, mode):
    """Hydra's ``hydra.mode=MULTIRUN`` is ``-m``; before, it skipped the precheck: the good seed
    trained, then the bad one raised a traceback, exit 1."""
    result = call_cli("archbench-train", mode, "data=digits", "model=logistic", "seed=1,a",
                      f"paths.data_dir={tmp_path / 'prepared'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      env=isolated)
    assert _one_line_error(result) == "archbench-train: error: seed must be an integer ≥ 0, got 'a'"
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("override, message", [
    ("hydra.nope=1", "Could not override 'hydra.nope'. To append to your config use +hydra.nope=1"),
    ("hydra.mode=multirun", "Error merging override hydra.mode=multirun (Invalid value 'multirun', "
                            "expected one of [RUN, MULTIRUN]"),
])
def test_a_bad_hydra_setting_in_a_single_run_is_one_line(tmp_path, isolated, override, message):
    """Before, Hydra printed its own error over several lines and exited 1 (multiruns already said it in one)."""
    result = call_cli("archbench-train", "data=digits", "model=logistic", override,
                      f"hydra.run.dir={tmp_path / 'run'}", env=isolated)
    assert _one_line_error(result).startswith(f"archbench-train: error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting", ["paths.output_root={file}", "hydra.run.dir={file}/run",
                                     "paths.data_dir={file}", "logger.tracking_uri=sqlite:///{file}/mlflow.db"])
def test_a_file_where_a_folder_must_be_is_one_line(tmp_path, isolated, setting):
    """Before, Python's NotADirectoryError or FileExistsError as a traceback, exit 1."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    result = call_cli("archbench-train", "data=digits", "model=logistic", setting.format(file=in_the_way),
                      f"paths.output_root={tmp_path / 'outputs'}" if "output_root" not in setting else "seed=1",
                      env=isolated)
    line = _one_line_error(result)
    assert line.startswith(f"archbench-train: error: cannot use {in_the_way}")
    assert line.endswith("(a file stands where a folder is needed)")
    assert in_the_way.read_text() == "not a folder"


def test_only_path_errors_a_user_can_fix_become_one_line():
    import errno

    from archbench.cli.common import path_error_line

    refused = PermissionError(errno.EACCES, "Permission denied", "/srv/runs")
    assert path_error_line(refused) == ("cannot use /srv/runs: Permission denied (this user may not write "
                                        "there: choose a folder it owns)")
    assert path_error_line(OSError(errno.ENOSPC, "No space left on device", "/srv/runs/x.ckpt")).endswith(
        "(the disk is full)")
    assert path_error_line(FileNotFoundError(errno.ENOENT, "No such file", "/srv/x")) is None  # sources name it
    assert path_error_line(PermissionError(errno.EACCES, "Permission denied")) is None  # no path to name
    assert path_error_line(ValueError("bug")) is None


def test_a_tracking_server_that_does_not_answer_is_one_line_for_a_logged_model(closed_port):
    """Before, archbench-predict retried the server for minutes, then said it could not load the model."""
    result = call_cli("archbench-predict", "--registered", "digits-mlp", "--text", "hello",
                      "--tracking-uri", f"http://127.0.0.1:{closed_port}")
    assert _one_line_error(result) == (
        f"archbench-predict: error: --tracking-uri: no server answers at http://127.0.0.1:{closed_port} "
        f"(Connection refused); start it (mlflow server --host HOST --port PORT) or point --tracking-uri "
        f"at one that runs")


def test_a_multirun_with_a_bad_sweeper_value_is_one_line(tmp_path, isolated):
    result = call_cli("archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
                      "hydra.sweeper.n_trials=abc", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}", env=isolated)
    line = _one_line_error(result)
    assert line.startswith("archbench-train: error: Error merging override hydra.sweeper.n_trials=abc")
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("typo, message", [
    ("optimizer.lrr=0.1", "unknown key optimizer.lrr; did you mean optimizer.lr? optimizer has: betas, lr, name, "
                          "weight_decay (+optimizer.lrr=… adds a new key, which only a component that reads it uses)"),
    ("modle.net.hidden=[8]", "unknown key modle; did you mean model? the config has: "),
    # data=csv and text_files name their files data.path; image_folder (as the other folders) data.root
    ("data=image_folder data.path=pics", "unknown key data.path; did you mean data.root? data has: "),
])
def test_a_mistyped_key_is_named_with_the_close_one(tmp_path, isolated, typo, message):
    """Before, Hydra's line advised +optimizer.lrr=0.1, which trains as if the setting were unsaid."""
    result = call_cli("archbench-train", "data=digits", "model=mlp", *typo.split(), f"hydra.run.dir={tmp_path / 'run'}",
                      env=isolated)
    assert _one_line_error(result).startswith(f"archbench-train: error: {message}")
    assert result.returncode == 2 and not (tmp_path / "run").exists()


def test_seed_replicates_of_two_configurations_are_refused_before_any_job(tmp_path, isolated):
    """Before, model=boe,cnn with replicas=seeds trained both into seed<N>: the cnn overwrote the boe's
    runs and the summary held the cnn alone, with nothing said."""
    sweep = tmp_path / "sweep"
    result = call_cli("archbench-train", "-m", "replicas=seeds", "data=digits", "model=logistic,mlp",
                      "seed=1,2", f"hydra.sweep.dir={sweep}", env=isolated)
    assert result.returncode == 2
    assert _one_line_error(result) == (
        "archbench-train: error: replicas=seeds repeats one configuration over seeds, and model is swept too: "
        "those jobs would share the seed<N> folders, each overwriting the last. Run one multirun per value "
        "of it, each with its own hydra.sweep.dir")
    assert not sweep.exists()


def test_prepare_cli_rejects_unknown_dataset():
    line = _one_line_error(run_cli("archbench-prepare", "cifar"))
    assert "valid: " + ", ".join(config_groups()["data"]) in line


def test_every_task_names_the_command_that_reads_its_models():
    """A model given to the wrong command names the right one; before, archbench-predict had no
    hint for a transcription model and archbench-generate sent a recommender to archbench-predict."""
    from archbench.cli.common import other_program_hint
    from archbench.tasks import task_names

    assert {name: other_program_hint(name) != "" for name in task_names()} == {name: True for name in task_names()}
    assert other_program_hint("rating") == " (use archbench-recommend for a recommender)"
    assert other_program_hint("ctc") == " (use archbench-transcribe for a transcription model)"


@pytest.mark.parametrize("args, message", [
    (["digits", "--bogus"], "archbench-prepare: error: unrecognized arguments: --bogus"),
    (["digits", "data.sed=1"], "archbench-prepare: error: unknown key data.sed; did you mean data.seed? data has: "),
])
def test_prepare_cli_refuses_bad_overrides_in_one_line(tmp_path, args, message):
    """Both were Hydra tracebacks, exit 1 (an unknown option gets argparse's usage line first)."""
    result = call_cli("archbench-prepare", *args, f"paths.data_dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert not list(tmp_path.iterdir())


def test_prepare_cli_takes_a_comma_list_as_names(tmp_path):
    result = call_cli("archbench-prepare", "digits,breast_cancer", f"paths.data_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["breast_cancer", "digits"]


@pytest.mark.parametrize("args, message", [
    (["archbench-predict", "x.npy", "--top", "0"], "--top must be ≥ 1, got 0"),
    (["archbench-predict", "x.npy", "--limit", "-1"], "--limit must be ≥ 1, got -1"),
    (["archbench-predict", "x.npy", "--beam-size", "0"], "--beam-size must be ≥ 1, got 0"),
    (["archbench-generate", "--length", "0"], "--length must be ≥ 1, got 0"),
    (["archbench-generate", "--top-k", "-3"], "--top-k must be ≥ 1, got -3"),
    (["archbench-generate", "--temperature", "0"], "--temperature must be > 0, got 0"),
    (["archbench-export", "--tolerance", "-1"], "--tolerance must be ≥ 0, got -1"),
    (["archbench-recommend", "1", "--top", "0"], "--top must be ≥ 1, got 0"),
    (["archbench-transcribe", "a.wav", "--beam-size", "0"], "--beam-size must be ≥ 1 (1: greedy), got 0"),
    (["archbench-sbatch", "--nodes", "2", "--gpus-per-node", "1", "--hours", "0"], "--hours must be > 0, got 0"),
    (["archbench-sbatch", "--nodes", "2", "--gpus-per-node", "0"], "--gpus-per-node must be ≥ 1, got 0"),
])
def test_numeric_options_out_of_range_are_one_line_before_any_model_loads(args, message):
    """Before, predict's --top 0 and generate's --top-k -3 were tracebacks, predict's --limit -1 and
    export's negative --tolerance ran with a meaningless value."""
    model = [] if args[0] == "archbench-sbatch" else ["--model-uri", "runs:/0123456789abcdef/model"]
    assert _one_line_error(call_cli(*args, *model)) == f"{args[0]}: error: {message}"


def test_help_says_what_the_program_does_and_lists_config_groups():
    result = run_cli("archbench-train", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("archbench-train: prepare (once), train, test and track")
    assert "powered by Hydra" not in result.stdout  # Hydra's own header, naming the module "train"
    assert "model: " + ", ".join(config_groups()["model"]) in result.stdout


@pytest.mark.parametrize(("body", "code"), [("print('done')", 0), ("sys.exit(2)", 2), ("sys.exit('bad')", 1)])
def test_console_scripts_run_exit_handlers_and_keep_the_status_on_their_quick_exit(body, code):
    """archbench.cli.entry.run: exit handlers still run and output is flushed before ``os._exit``."""
    import subprocess
    import sys

    program = ("import atexit, sys\nfrom archbench.cli.entry import run\n"
               "atexit.register(lambda: print('handler ran'))\n"
               f"def main():\n    {body}\nrun(main)\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stderr
    assert result.stdout.splitlines()[-1] == "handler ran"
    assert ("bad" in result.stderr) == (code == 1)


def test_the_run_summary_shows_the_kept_epochs_validation_metrics(tmp_path):
    """Before, a classifier's line read "best val val/acc_then_loss 1.052": accuracy plus a tie-break."""
    from archbench.cli.common import _best_epoch

    (tmp_path / "curves.csv").write_text("epoch,train/loss,val/acc,val/acc_then_loss,val/loss\n"
                                         "0,0.9,0.5,0.52,0.8\n1,0.5,1.0,1.052,0.37\n2,0.4,1.0,1.05,0.38\n")
    assert _best_epoch(tmp_path, {"val/acc_then_loss_best": 1.052}) == "epoch 2: acc 1, loss 0.37 (kept by acc, ties by loss)"
    assert _best_epoch(tmp_path, {"val/loss_best": 0.8}) == "epoch 1: acc 0.5, loss 0.8 (kept by loss)"
    (tmp_path / "curves.csv").unlink()
    assert _best_epoch(tmp_path, {"val/loss_best": 0.8}) == "val/loss 0.8"
