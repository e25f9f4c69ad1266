"""The real DVC pipeline on a tiny budget, in a temp copy of the project."""

import json
import shutil
import subprocess
from contextlib import contextmanager

import mlflow
import pytest
from conftest import REPO, run_cli

TINY_PARAMS = """
seeds: 42,43
datasets: [digits, diabetes, pydoc_text]
classify:
  digits-logistic: {data: digits, model: logistic, reads: data/prepared/digits,
    overrides: "trainer.max_epochs=2 logger.log_model=false"}
  digits-mlp: {data: digits, model: mlp, reads: data/prepared/digits,
    overrides: "trainer.max_epochs=2"}
train:
  diabetes-linear: {data: diabetes, model: linear, reads: data/prepared/diabetes,
    overrides: "trainer.max_epochs=3 logger.log_model=false"}
language_model:
  pydoc_text-lstm: {data: pydoc_text, model: lstm, reads: data/prepared/pydoc_text,
    overrides: "trainer.max_epochs=1 data.steps_per_epoch=5 model.lm_net.hidden_size=32
    model.lm_net.num_layers=1 data.sample_length=20 logger.log_model=false"}
sweep:
  digits-logistic: {data: digits, model: logistic, reads: data/prepared/digits,
    overrides: "hydra.sweeper.n_trials=2 trainer.max_epochs=2"}
tune_budget: {trials: 2, max_epochs: 2}
tune:
  digits-logistic: {data: digits, model: logistic, reads: data/prepared/digits}
generative:
  digits-gan: {data: digits, model: gan, reads: results/train/digits-mlp/seed42/checkpoints,
    overrides: "trainer.max_epochs=1 model.quality.num_samples=200 logger.log_model=false"}
"""
RUN_STAGES = {"classify@digits-logistic", "classify@digits-mlp",
              "train@diabetes-linear", "language_model@pydoc_text-lstm", "sweep@digits-logistic",
              "generative@digits-gan", "tune@digits-logistic"}


@pytest.fixture
def project(tmp_path):
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("conf", "src", "dvc.yaml", ".dvc", ".dvcignore", ".gitignore"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        elif source.exists():
            shutil.copy(source, copy / name)
    (copy / "params.yaml").write_text(TINY_PARAMS)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)  # so `dvc params diff` has a HEAD
    return copy


@pytest.mark.slow
def test_dvc_repro_runs_tracks_and_is_then_up_to_date(project):
    env = {"ARCHBENCH_ROOT": str(project)}
    first = run_cli("dvc", "repro", cwd=project, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    for key in ("digits-logistic", "digits-mlp"):
        for seed in (42, 43):
            metrics = json.loads((project / "results/train" / key / f"seed{seed}" / "metrics.json").read_text())
            assert metrics["test/acc"] > 0.3
        summary = json.loads((project / "results/train" / f"{key}.json").read_text())
        assert summary["n"] == 2 and set(summary["seeds"]) == {"42", "43"}
        assert summary["seeds"]["42"]["test/loss"] != summary["seeds"]["43"]["test/loss"]  # seeds differ
        assert (project / "results/train" / f"{key}.curves.csv").is_file()
    report = (project / "reports/comparison.md").read_text()
    assert "**digits**: best **" in report and "| logistic | 2 |" in report and "| mlp | 2 |" in report
    assert "| pydoc_text | lstm |" in report  # the language-model table
    assert "## Regression" in report and "| diabetes | linear |" in report
    assert len((project / "results/train/pydoc_text-lstm/seed42/sample.txt").read_text()) == 21
    assert (project / "reports/comparison.png").stat().st_size > 1000
    assert "| digits | gan |" in report and "![gan samples](samples/digits-gan.png)" in report
    assert (project / "reports/samples/digits-gan.png").stat().st_size > 1000
    assert "## Hyperparameter sweeps" in report and "| digits-logistic-" in report
    assert "Default recipe vs tuned" in report and "2 trials" in report  # tune mode's table
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_model_version_by_alias("archbench-digits-logistic", "champion")



    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["archbench"])
    trained = runs[runs["tags.output_dir"].fillna("").str.contains("results/train/")]
    names = ["gan-digits", "linear-diabetes", "logistic-digits", "lstm-pydoc_text", "mlp-digits"]
    assert sorted(trained["tags.mlflow.runName"]) == sorted(names * 2)  # two seeds each
    assert sorted(trained["tags.seed"]) == ["42"] * 5 + ["43"] * 5
    # plus each study's parent run and its two trials (sweep, tune), and tune's two retrained seeds
    assert len(runs) == 10 + 2 * (1 + 2) + 2
    assert set(runs["status"]) == {"FINISHED"}

    again = run_cli("dvc", "repro", cwd=project, env=env)
    assert again.returncode == 0
    assert "Data and pipelines are up to date" in again.stdout, again.stdout

    # a DVC remote (a local folder; S3/SSH work alike): push the cached outputs, commit the rest, and
    # a clone that pulls instead of re-running is up to date with the same report and checkpoints
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    assert run_cli("dvc", "remote", "add", "-d", "shared", str(project.parent / "remote"), cwd=project).returncode == 0
    pushed = run_cli("dvc", "push", cwd=project, env=env)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "repro"], cwd=project, check=True)
    clone = project.parent / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    clone_env = {"ARCHBENCH_ROOT": str(clone)}
    pulled = run_cli("dvc", "pull", cwd=clone, env=clone_env)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    status = run_cli("dvc", "status", cwd=clone, env=clone_env)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    assert (clone / "reports/comparison.md").read_text() == report
    assert sorted(p.name for p in (clone / "results/train/digits-mlp/seed42/checkpoints").glob("*.ckpt")) == \
        sorted(p.name for p in (project / "results/train/digits-mlp/seed42/checkpoints").glob("*.ckpt"))
    assert (clone / "data/prepared/digits/meta.json").is_file()
    # the Optuna dashboard opens the sweep stage's study storage and lists the study
    [storage] = (project / "results/sweep/digits-logistic").glob("**/optuna.db")
    studies = _dashboard_studies(f"sqlite:///{storage}")
    assert [s["study_name"].startswith("digits-logistic-") for s in studies] == [True]
    assert studies[0]["directions"] == ["maximize"]

    shown = run_cli("dvc", "metrics", "show", "--json", cwd=project, env=env)
    assert "test/acc" in shown.stdout

    # editing one model's config makes only the stages that use it stale (compare follows them)
    with edited(project / "conf/model/mlp.yaml", "dropout: 0.2", "dropout: 0.1"):
        assert stale_stages(project, env) == {"classify@digits-mlp"}
    # one recipe (a pair's DVC params): exactly its pair, and `dvc params diff` shows the value
    with edited(project / "conf/recipe/digits_logistic.yaml", "lr: 3.0e-3", "lr: 5.0e-3"):
        assert stale_stages(project, env) == {"classify@digits-logistic", "sweep@digits-logistic",
                                              "tune@digits-logistic"}
        diff = run_cli("dvc", "params", "diff", "--all", cwd=project, env=env).stdout
        assert "conf/recipe/digits_logistic.yaml" in diff and "optimizer.lr" in diff, diff
    # data code (batching, layout) is code every run executes: every run stage is stale
    with edited(project / "src/archbench/data/datamodule.py", '"""One in-memory', '"""One  in-memory'):
        assert stale_stages(project, env) == RUN_STAGES
    assert stale_stages(project, env) == set()
    # byte-compiled files come and go with the machine and its history: not code a stage depends on
    # (.dvcignore); before, a new .pyc made every run stage stale, and a fresh clone saw src/ changed
    stray = project / "src/archbench/data/__pycache__/stray.cpython-311.pyc"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"\0")
    assert stale_stages(project, env) == set()


@contextmanager
def edited(path, old: str, new: str):
    """``path`` with ``old`` replaced by ``new`` inside the block, restored after it."""
    original = path.read_text()
    assert old in original, f"{old!r} not in {path}"
    path.write_text(original.replace(old, new, 1))
    try:
        yield
    finally:
        path.write_text(original)


def _dashboard_studies(storage: str) -> list[dict]:
    """The studies `optuna-dashboard STORAGE` (a real server on loopback) lists at /api/studies."""
    import urllib.request

    from conftest import BIN, free_port, http_server

    port = free_port()
    api = f"http://127.0.0.1:{port}/api/studies"
    with http_server([str(BIN / "optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port),
                      "--quiet"], api, seconds=60), urllib.request.urlopen(api, timeout=5) as response:
        return json.loads(response.read())["study_summaries"]


def stale_stages(project, env) -> set[str]:
    status = run_cli("dvc", "status", "--json", cwd=project, env=env)
    return set(json.loads(status.stdout))


def test_run_stages_depend_on_every_module_a_run_executes():
    """The shared dependency list names every part of the package but the report (which only the
    compare stage runs), style transfer (only archbench-stylize runs it) and export (only
    archbench-export): a new module cannot
    silently escape DVC's notice."""
    import yaml

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    deps = set(pipeline["stages"]["classify"]["do"]["deps"])
    for kind in ("train", "language_model", "generative", "sweep"):
        assert set(pipeline["stages"][kind]["do"]["deps"]) == deps, kind  # one list, the anchor
    package = REPO / "src" / "archbench"
    for entry in sorted(package.iterdir()):
        if entry.name in ("report", "stylize.py", "export.py", "__pycache__") or entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix == ".py":
            assert f"src/archbench/{entry.name}" in deps, entry.name
    assert "src/hydra_plugins" in deps and "${item.reads}" in deps


def test_every_pipeline_pair_has_a_recipe():
    """Recipes are the pairs' DVC params: a pair without one could not declare them."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for kind in ("classify", "train", "language_model", "generative", "sweep"):
        for key, item in (params.get(kind) or {}).items():
            recipe = REPO / "conf" / "recipe" / f"{item['data']}_{item['model']}.yaml"
            assert recipe.is_file(), f"{kind}@{key} has no {recipe.relative_to(REPO)}"


def test_the_compare_stage_finds_every_folder_it_depends_on_in_a_clean_clone():
    """A params.yaml with no sweep or tune pair still runs `compare`: each results/ folder that the
    compare stage depends on is in git (by its README), not only made by the stages that fill it."""
    import yaml

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    for dep in pipeline["stages"]["compare"]["deps"]:
        if dep.startswith("results/") and dep != "results/train":  # results/train: every pair writes it
            assert any(path.startswith(dep + "/") for path in tracked), dep
