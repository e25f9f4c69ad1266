"""The real DVC pipeline on a tiny budget, in a temp copy of the project."""

import json
import shutil
import subprocess

import mlflow
import pytest
from conftest import REPO, run_cli

TINY_PARAMS = """
datasets: [digits, breast_cancer, pydoc_text]
train:
  digits-logistic: {data: digits, model: logistic, overrides: "trainer.max_epochs=2 logger.log_model=false"}
  breast_cancer-mlp: {data: breast_cancer, model: mlp, overrides: "trainer.max_epochs=2"}
  digits-cnn: {data: digits, model: cnn, overrides: "trainer.max_epochs=1 logger.log_model=false"}
language_model:
  pydoc_text-lstm: {data: pydoc_text, model: lstm, overrides: "trainer.max_epochs=1 data.steps_per_epoch=5
    model.lm_net.hidden_size=32 model.lm_net.num_layers=1 data.sample_length=20 logger.log_model=false"}
sweep:
  digits-logistic: {data: digits, model: logistic, overrides: "hydra.sweeper.n_trials=2 trainer.max_epochs=2"}
generative:
  digits-gan: {data: digits, model: gan, classifier: digits-cnn, overrides: "trainer.max_epochs=1
    model.quality.num_samples=200 logger.log_model=false"}
"""


@pytest.fixture
def project(tmp_path):
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("conf", "src", "dvc.yaml", ".dvc", ".dvcignore"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        elif source.exists():
            shutil.copy(source, copy / name)
    (copy / "params.yaml").write_text(TINY_PARAMS)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    return copy


@pytest.mark.slow
def test_dvc_repro_runs_tracks_and_is_then_up_to_date(project):
    env = {"ARCHBENCH_ROOT": str(project)}
    first = run_cli("dvc", "repro", cwd=project, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    for key in ("digits-logistic", "breast_cancer-mlp"):
        metrics = json.loads((project / "results/train" / key / "metrics.json").read_text())
        assert metrics["test/acc"] > 0.3
        assert (project / "results/train" / key / "curves.csv").is_file()
    report = (project / "reports/comparison.md").read_text()
    assert "| digits | logistic |" in report and "| breast_cancer | mlp |" in report
    assert "| pydoc_text | lstm |" in report  # the language-model table
    assert len((project / "results/train/pydoc_text-lstm/sample.txt").read_text()) == 21
    assert (project / "reports/comparison.png").stat().st_size > 1000
    assert "| digits | gan |" in report and "![gan samples](samples/digits-gan.png)" in report
    assert (project / "reports/samples/digits-gan.png").stat().st_size > 1000
    assert "## Hyperparameter sweeps" in report and "| digits-logistic-" in report
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_model_version_by_alias("archbench-digits-logistic", "champion")



    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["archbench"])
    trained = runs[runs["tags.archbench.sweep"].isna() & runs["tags.optuna.trial_number"].isna()]
    assert sorted(trained["tags.mlflow.runName"]) == ["cnn-digits", "gan-digits", "logistic-digits",
                                                      "lstm-pydoc_text", "mlp-breast_cancer"]
    assert len(runs) == 5 + 1 + 2  # plus the sweep's parent run and its two trials
    assert set(runs["status"]) == {"FINISHED"}

    again = run_cli("dvc", "repro", cwd=project, env=env)
    assert again.returncode == 0
    assert "Data and pipelines are up to date" in again.stdout, again.stdout

    shown = run_cli("dvc", "metrics", "show", "--json", cwd=project, env=env)
    assert "test/acc" in shown.stdout

    # editing one model's config makes only the stages that use it stale (compare follows them)
    mlp_yaml = project / "conf/model/mlp.yaml"
    mlp_yaml.write_text(mlp_yaml.read_text().replace("dropout: 0.2", "dropout: 0.1"))
    status = run_cli("dvc", "status", "--json", cwd=project, env=env)
    stale = set(json.loads(status.stdout))
    assert stale == {"train@breast_cancer-mlp"}, stale
