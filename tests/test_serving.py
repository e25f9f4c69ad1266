"""The registry's champion served by `mlflow models serve` (a real HTTP server on loopback) and
exported by archbench-export, both agreeing with archbench-predict."""

from __future__ import annotations

import json
import urllib.request

import mlflow
import numpy as np
import pytest
import torch
from conftest import BIN, call_cli, free_port, http_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A digits MLP trained, logged and registered as archbench-digits-mlp@champion."""
    root = tmp_path_factory.mktemp("champion")
    store = f"sqlite:///{root / 'mlflow.db'}"
    result = call_cli("archbench-train", "data=digits", "model=mlp", "trainer.max_epochs=2", "register=true",
                      "callbacks.progress_bar=none", f"paths.data_dir={root / 'data'}",
                      f"logger.tracking_uri={store}", f"hydra.run.dir={root / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    x = torch.load(root / "data" / "digits" / "test.pt", weights_only=True)["x"][:5].numpy()
    np.save(root / "x.npy", x)
    return root, store, x


def _predicted(store: str, inputs) -> list[list[str]]:
    result = call_cli("archbench-predict", str(inputs), "--registered", "digits-mlp", "--tracking-uri", store)
    assert result.returncode == 0, result.stderr[-2000:]
    return [line.split(",") for line in result.stdout.strip().splitlines()[1:]]


def test_mlflow_models_serve_answers_invocations_like_archbench_predict(champion):
    root, store, x = champion
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": store, "PATH": f"{BIN}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    serve = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/archbench-digits-mlp@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with http_server(serve, f"http://127.0.0.1:{port}/ping", env=env):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
    assert served.shape == (5, 10)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)  # class probabilities
    rows = _predicted(store, root / "x.npy")
    assert [int(r[1]) for r in rows] == served.argmax(axis=1).tolist()
    np.testing.assert_allclose([float(r[2]) for r in rows], served.max(axis=1), atol=1e-4)


def test_export_writes_onnx_within_1e4_and_logs_it_to_the_models_run(champion):
    import onnxruntime as ort

    root, store, x = champion
    out = root / "export"
    result = call_cli("archbench-export", "--registered", "digits-mlp", "--tracking-uri", store,
                      "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["format"] == "onnx" and figures["max_abs_diff"] < 1e-4 and figures["same_argmax"] == 1.0
    assert figures["batch_size"] == 360  # the run's first test batch: all of digits' test split

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {session.get_inputs()[0].name: x})[0]
    rows = _predicted(store, root / "x.npy")
    assert [int(r[1]) for r in rows] == probabilities.argmax(axis=1).tolist()

    client = mlflow.MlflowClient(store)
    run_id = client.get_model_version_by_alias("archbench-digits-mlp", "champion").run_id
    logged = {a.path for a in client.list_artifacts(run_id, "export")}
    assert logged == {"export/model.onnx", "export/onnx.json"}
    assert client.get_run(run_id).data.metrics["export/onnx_max_abs_diff"] == figures["max_abs_diff"]

    tight = call_cli("archbench-export", "--registered", "digits-mlp", "--tracking-uri", store,
                     "--output", str(root / "strict"), "--tolerance", "0", "--no-log",
                     "--format", "onnx")
    assert tight.returncode == (1 if figures["max_abs_diff"] > 0 else 0)
    bad = call_cli("archbench-export", "--registered", "digits-mlp", "--tracking-uri", store,
                   "--batch-size", "1")
    assert bad.returncode == 2 and "--batch-size must be ≥ 2" in bad.stderr


def test_an_image_classifier_as_pyfunc_labels_base64_image_files_like_archbench_predict(champion):
    """The raw-input pyfunc of an image model takes image files as base64 strings (JSON carries no
    bytes) and reads them as archbench-predict reads the same files; what is not an image is a 400."""
    import base64

    import pandas as pd
    from mlflow.exceptions import MlflowException
    from PIL import Image

    root, store, _ = champion
    pictures = root / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(pictures / f"{i}.png")
    exported = call_cli("archbench-export", "--registered", "digits-mlp", "--tracking-uri", store,
                        "--format", "pyfunc", "--output", str(root / "pyfunc-export"), "--no-log")
    assert exported.returncode == 0, exported.stderr[-3000:]
    served = mlflow.pyfunc.load_model(str(root / "pyfunc-export" / "pyfunc"))
    encoded = [base64.b64encode((pictures / f"{i}.png").read_bytes()).decode() for i in range(3)]
    answer = served.predict(pd.DataFrame({"image": encoded}))
    printed = call_cli("archbench-predict", str(pictures), "--registered", "digits-mlp", "--tracking-uri", store)
    rows = [line.split(",") for line in printed.stdout.strip().splitlines()[1:]]
    assert answer["label"].tolist() == [r[1] for r in rows]
    assert [f"{p:.4f}" for p in answer["probability"]] == [r[2] for r in rows]
    with pytest.raises(MlflowException, match="image 1: not an image file Pillow reads"):
        served.predict(pd.DataFrame({"image": [encoded[0], base64.b64encode(b"plain text").decode()]}))


def test_a_model_the_registry_lacks_is_one_line_naming_what_it_holds(champion, tmp_path):
    """A mistyped name, alias or version lists what is registered; a store file that is not there
    is said, not created."""
    _, store, _ = champion
    cases = {
        ("--registered", "digits-cnn"): "registered: digits-mlp (--registered takes the DATA-MODEL part)",
        ("--model-uri", "models:/archbench-digits-mlp@best"): "archbench-digits-mlp has aliases @champion (v1), versions 1",
        ("--model-uri", "models:/archbench-digits-mlp/7"): "archbench-digits-mlp has aliases @champion (v1), versions 1",
    }
    for where, said in cases.items():
        result = call_cli("archbench-export", *where, "--tracking-uri", store, "--no-log")
        assert result.returncode == 2 and said in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1
    missing = tmp_path / "elsewhere.db"
    result = call_cli("archbench-predict", "x.npy", "--registered", "digits-mlp",
                      "--tracking-uri", f"sqlite:///{missing}")
    assert result.returncode == 2 and f"no tracking store at {missing}" in result.stderr
    assert not missing.exists()


def test_a_table_model_served_as_pyfunc_takes_rows_by_column_name_like_archbench_predict(tmp_path):
    """`archbench-export --format pyfunc` wraps a table model for `mlflow models serve`: JSON rows by
    column name in, labels and probabilities out (the pytorch flavour served takes normalised tensors)."""
    import urllib.error

    import pandas as pd
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame["strength"] = np.where(frame["alcohol"] > 13, "strong", "light")
    frame.to_csv(tmp_path / "wine.csv", index=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = call_cli("archbench-train", "data=csv", f"data.path={tmp_path / 'wine.csv'}", "data.target=cultivar",
                       "model=mlp", "trainer.max_epochs=3", "register=true", "callbacks.progress_bar=none",
                       f"paths.data_dir={tmp_path / 'data'}", f"logger.tracking_uri={store}",
                       f"hydra.run.dir={tmp_path / 'run'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    model = ["--registered", "csv-mlp", "--tracking-uri", store]
    exported = call_cli("archbench-export", *model, "--format", "pyfunc", "--output", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    served_uri = exported.stdout.split("mlflow models serve -m ")[1].split()[0]
    assert served_uri.startswith("runs:/") and served_uri.endswith("/export/pyfunc")
    rows = frame.drop(columns="cultivar").iloc[[0, 70, 150]]
    rows.to_csv(tmp_path / "new.csv", index=False)
    printed = call_cli("archbench-predict", str(tmp_path / "new.csv"), *model)
    expected = [line.split(",") for line in printed.stdout.strip().splitlines()[1:]]

    port = free_port()
    env = {"MLFLOW_TRACKING_URI": store, "PATH": f"{BIN}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    serve = [str(BIN / "mlflow"), "models", "serve", "-m", served_uri, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]

    def post(records):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"dataframe_records": records}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return pd.DataFrame(json.loads(response.read())["predictions"])

    with http_server(serve, f"http://127.0.0.1:{port}/ping", env=env):
        answer = post(rows.to_dict(orient="records"))
        assert answer["label"].tolist() == [r[1] for r in expected]
        assert [f"{p:.4f}" for p in answer["probability"]] == [r[2] for r in expected]
        assert set(answer.columns) == {"label", "probability", "p(barbera)", "p(barolo)", "p(grignolino)"}
        unseen = rows.iloc[:1].assign(strength="medium").to_dict(orient="records")
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(unseen)
        assert refused.value.code == 400
        assert "'medium', a value training never saw (known: light, strong)" in refused.value.read().decode()
    # in a Python process (pyfunc.load_model, Spark's UDF), a table read by pandas has integer
    # columns: before, MLflow's schema refused them ("Can not safely convert int64 to float64")
    whole = rows.assign(magnesium=rows["magnesium"].astype(int), proline=rows["proline"].astype(int))
    mlflow.set_tracking_uri(store)
    answer = mlflow.pyfunc.load_model(served_uri).predict(whole)
    assert answer["label"].tolist() == [r[1] for r in expected]


def test_export_to_a_named_file_takes_its_format_from_the_suffix(champion, tmp_path):
    """Before, --output model.pt was a folder: model.pt/model.onnx."""
    root, store, _ = champion
    named = call_cli("archbench-export", "--registered", "digits-mlp", "--tracking-uri", store,
                     "--output", str(tmp_path / "mlp.pt"), "--no-log")
    assert named.returncode == 0, named.stderr[-2000:]
    assert json.loads(named.stdout.strip().splitlines()[-1])["format"] == "torchscript"
    assert (tmp_path / "mlp.pt").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["mlp.pt"]
    clash = call_cli("archbench-export", "--registered", "digits-mlp", "--tracking-uri", store,
                     "--output", str(tmp_path / "mlp.onnx"), "--format", "torchscript", "--no-log")
    assert clash.returncode == 2 and clash.stderr.strip().splitlines()[-1] == (
        f"archbench-export: error: --output {tmp_path / 'mlp.onnx'} names an ONNX file, and --format is "
        "torchscript: give a .pt file or a folder")
