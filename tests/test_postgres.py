"""PostgreSQL behind both shared stores: an Optuna study two sweep workers share, and the backend
store of an MLflow tracking server (served artifacts) they log to, whose registry holds the
champion; runs, curves, artifacts and the model are read back over HTTP.

The server is a real PostgreSQL (Debian's ``postgresql`` package: ``initdb`` + ``pg_ctl``), started
here on 127.0.0.1 with a free port and trust authentication, in a temp directory; as root it runs
as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
from conftest import BIN, REPO, free_port, http_server, run_cli
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A PostgreSQL server on 127.0.0.1:<port>; yields ``url(database)`` for SQLAlchemy."""
    bindir = postgres_bin()
    if bindir is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("postgres")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root; pytest's temp dirs are root's own (0700)
        as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
        root = Path(tempfile.mkdtemp(prefix="archbench-pg-"))
        shutil.chown(root, "postgres")
    data = root / "data"
    port = free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    log = root / "server.log"
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                    "-w", "-t", "60", "start"], check=True, capture_output=True)
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            for name in ("optuna", "mlflow"):
                cursor.execute(f"CREATE DATABASE {name}")
        admin.close()
        yield lambda database: f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        if as_user:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    """``mlflow server`` whose backend store is the PostgreSQL database ``mlflow``."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
              "--backend-store-uri", postgres("mlflow"), "--artifacts-destination", str(root / "artifacts"),
              "--workers", "1"]
    # without MLflow 3's job runner (7 huey processes for GenAI jobs): as `make ui` starts the UI
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with http_server(server, f"http://127.0.0.1:{port}/health", env=env):
        yield f"http://127.0.0.1:{port}"


def test_two_sweep_workers_share_a_postgres_study_and_log_to_a_postgres_backed_server(
        postgres, tracking_server, tmp_path):
    storage = postgres("optuna")
    args = ["archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
            "trainer.max_epochs=2", "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner.name=none",
            f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=pg-study",
            f"paths.data_dir={tmp_path / 'data'}", f"paths.output_root={tmp_path / 'outputs'}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server, "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    assert run_cli("archbench-prepare", "digits", f"paths.data_dir={tmp_path / 'data'}").returncode == 0
    workers = [subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=400) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]

    study = optuna.load_study(study_name="pg-study", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]  # exactly N, none twice
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 4
    ran = [out.count("archbench-sweep: trial ") for out, _ in outputs]
    assert sum(ran) == 4 and min(ran) >= 1, ran

    client = mlflow.MlflowClient(tracking_server)  # everything below is read over HTTP
    experiment = client.get_experiment_by_name("archbench")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("optuna.trial_number")]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    champion = client.get_model_version_by_alias("archbench-digits-logistic", "champion")
    assert champion.run_id in {r.info.run_id for r in children}
    best = max(children, key=lambda r: r.data.metrics["val/acc_then_loss_best"])
    assert champion.run_id == best.info.run_id
    assert len(client.get_metric_history(best.info.run_id, "val/acc")) == 2  # curves over HTTP
    assert {"config.yaml", "confusion.png"} <= {a.path for a in client.list_artifacts(best.info.run_id)}
    mlflow.set_tracking_uri(tracking_server)
    model = mlflow.pytorch.load_model("models:/archbench-digits-logistic@champion")  # over HTTP
    x = torch.load(tmp_path / "data" / "digits" / "test.pt", weights_only=True)["x"][:5]
    assert model(x).shape == (5, 10)
    # and the rows live in PostgreSQL, not in a file beside the project
    import sqlalchemy

    with sqlalchemy.create_engine(postgres("mlflow")).connect() as connection:
        stored = connection.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar()
    assert stored == len(runs)
