"""The MLflow UI (started by ``make ui``) and the Optuna dashboard, rendered by a real headless
Chromium (Debian's ``chromium``; ``make test`` installs it when missing, as root): what a person
sees after a sweep — the experiment, the sweep's parent run with its trials, a run's metric
charts, the registered model with its champion alias, the study. Screenshots go to the test's
temp dir (``screenshots/``)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
from conftest import BIN, REPO, call_cli, free_port, http_server

pytestmark = pytest.mark.slow


def _chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        message = "no chromium (make test installs Debian's as root; or apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def rendered(chromium: str, url: str, screenshot: Path) -> tuple[str, str]:
    """The page's visible text and its DOM once its scripts have run, and a screenshot."""
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--virtual-time-budget=30000", "--window-size=1400,900",
                          f"--screenshot={screenshot}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    visible = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", visible)).split()), dom


def metric_page(base: str, experiment_id: str, run_id: str, key: str) -> str:
    """MLflow's page charting one metric of one run (what a run's metric link opens)."""
    import json
    from urllib.parse import quote, urlencode

    query = {"runs": json.dumps([run_id]), "metric": json.dumps(key), "experiments": json.dumps([experiment_id]),
             "plot_metric_keys": json.dumps([key]), "plot_layout": "{}", "x_axis": "step",
             "y_axis_scale": "linear", "line_smoothness": "1", "show_point": "false",
             "deselected_curves": "[]", "last_linear_y_axis_range": "[]"}
    return f"{base}/metric/{quote(key, safe='')}?{urlencode(query)}"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2-trial sweep of logistic regression on digits: parent run, 2 trial runs, a champion."""
    root = tmp_path_factory.mktemp("swept")
    store, storage = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    result = call_cli("archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
                      "trainer.max_epochs=3", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.name=none",
                      f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=browser-study",
                      f"paths.data_dir={root / 'data'}", f"paths.output_root={root / 'out'}",
                      f"hydra.sweep.dir={root / 'sweep'}", env={"MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stderr[-3000:]
    return root, store, storage


def test_the_mlflow_ui_shows_the_sweep_its_trials_their_charts_and_the_champion(swept):
    chromium = _chromium()
    root, store, _ = swept
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("archbench")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("archbench.sweep") == "parent"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2
    port = free_port()
    shots = root / "screenshots"
    shots.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}/#"
    ui = ["make", "-s", "-C", str(REPO), "ui", f"PORT={port}", f"STORE={store}"]
    with http_server(ui, f"http://127.0.0.1:{port}/health",
                     env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}):
        pages = {
            "experiments": f"{base}/experiments",
            "runs": f"{base}/experiments/{experiment.experiment_id}/runs",
            "trial": f"{base}/experiments/{experiment.experiment_id}/runs/{trials[0].info.run_id}",
            "chart": metric_page(base, experiment.experiment_id, trials[0].info.run_id, "val/acc"),
            "model": f"{base}/models/archbench-digits-logistic",
        }
        seen = {name: rendered(chromium, url, shots / f"{name}.png") for name, url in pages.items()}
    text = {name: visible for name, (visible, _) in seen.items()}
    assert "archbench" in text["experiments"] and "Experiments" in text["experiments"]
    assert parent.info.run_name in text["runs"]  # the sweep's parent row (its trials fold under it)
    assert "3 matching runs" in text["runs"]
    assert trials[0].info.run_name in text["trial"]
    assert parent.info.run_name in text["trial"]  # the trial page names its parent run
    last = client.get_metric_history(trials[0].info.run_id, "val/acc")[-1]
    assert "Completed Runs 1/1" in text["chart"] and f"{trials[0].info.run_name} (val/acc)" in text["chart"]
    assert f"{last.value!r} (step={last.step})" in text["chart"]  # the chart's table: the logged value
    assert 'class="main-svg"' in seen["chart"][1]  # the plot itself is drawn
    champion = client.get_model_version_by_alias("archbench-digits-logistic", "champion")
    assert "archbench-digits-logistic" in text["model"] and "@ champion" in text["model"]
    assert f"Version {champion.version}" in text["model"]
    for name in pages:
        assert (shots / f"{name}.png").stat().st_size > 10_000, name  # a rendered page, not blank


def test_the_optuna_dashboard_shows_the_study(swept):
    chromium = _chromium()
    root, _, storage = swept
    port = free_port()
    dashboard = [str(BIN / "optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    with http_server(dashboard, f"http://127.0.0.1:{port}/api/studies"):
        text, _ = rendered(chromium, f"http://127.0.0.1:{port}/dashboard", root / "dashboard.png")
        study, _ = rendered(chromium, f"http://127.0.0.1:{port}/dashboard/studies/1", root / "study.png")
    assert "browser-study" in text
    assert "browser-study" in study and "Best" in study
    assert (root / "study.png").stat().st_size > 10_000
