"""The open core: tasks as plug-ins, datasets as declared sources, your own data by config,
prepared-data variants, recipes that never override a choice, strict configs, and a layering
with no import cycles."""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import BIN, REPO, call_cli, run_cli

from archbench.config import compose, config_groups, to_dict
from archbench.errors import ConfigError, DataError, IncompatibleError
from archbench.tasks import load_task, task_names
from archbench.train import train

PACKAGE = REPO / "src" / "archbench"
EMBEDDED = ("digits", "mnist1d", "breast_cancer", "diabetes", "pydoc_text")


def _code_words(path: Path) -> set[str]:
    """Names, attributes and string literals of a module's code (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    return words


# --- tasks as plug-ins -------------------------------------------------------------------
def test_every_task_module_is_a_plugin_and_train_names_none():
    assert set(task_names()) >= {"classification", "regression", "language_model", "adversarial"}
    for name in task_names():
        task = load_task(name)
        assert task.name == name and task.data_kinds and task.monitor[1] in ("min", "max")
    code = _code_words(PACKAGE / "train.py")
    for word in [*task_names(), "hasattr", "kind", "optuna", "sweep", "recipe", "apply_recipe"]:
        assert not any(word in w for w in code), f"train.py's code mentions {word!r}"
    with pytest.raises(ConfigError, match="unknown task 'clustering'; valid: " + ", ".join(task_names())):
        load_task("clustering")


def test_regression_on_diabetes_end_to_end(make_cfg, tmp_path):
    """The fourth task: MSE/MAE/R² in the target's units, monitored on val/loss, model logged."""
    metrics = train(make_cfg("data=diabetes", "model=linear", "trainer.max_epochs=60", "logger.log_model=true"))
    assert metrics["test/r2"] > 0.3  # scikit-learn's OLS reaches 0.45 on this split
    assert 35 < metrics["test/mae"] < 70  # units of the target (25–346), not standardised ones
    assert metrics["test/mse"] > 1000 and "val/loss_best" in metrics
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["task"] == "regression"
    model = mlflow.pytorch.load_model(run["model_uri"])
    x = __import__("torch").load(make_cfg("data=diabetes").data.dir + "/test.pt", weights_only=True)["x"][:8]
    predictions = model(x).detach().numpy().ravel()
    assert predictions.min() >= 25 and predictions.max() <= 346  # a progression score, not a z-score
    import numpy as np

    with np.load(tmp_path / "run" / "test_predictions.npz") as saved:  # for the report's RMSE interval
        errors = saved["predictions"] - saved["targets"]
        assert len(errors) == len(torch_load_test(make_cfg)) and saved["targets"].min() >= 25
    assert float(np.mean(errors ** 2)) == pytest.approx(metrics["test/mse"], rel=1e-4)


def torch_load_test(make_cfg):
    return __import__("torch").load(make_cfg("data=diabetes").data.dir + "/test.pt", weights_only=True)["y"]


def test_a_classifier_refuses_regression_data(make_cfg):
    with pytest.raises(IncompatibleError, match="diabetes is regression data"):
        train(make_cfg("data=diabetes", "model=perceptron"))


# --- datasets as declared sources --------------------------------------------------------
def test_every_dataset_config_names_a_source_function():
    from archbench.data.prepare import resolve_source

    for name in config_groups()["data"]:
        data = to_dict(compose([f"data={name}"]).data)
        assert callable(resolve_source(data)), name


def test_the_readme_lists_every_dataset_config():
    """The README's config-groups paragraph had drifted: six datasets were missing from it."""
    import re

    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"Config groups \(`conf/`\): `data` \(([^)]*)\)", readme).group(1)
    names = set(re.findall(r"[a-z0-9_]+", listed.replace("and your own", "")))
    assert set(config_groups()["data"]) <= names, set(config_groups()["data"]) - names


# --- your own data by config alone -------------------------------------------------------
@pytest.fixture
def wine_csv(tmp_path) -> Path:
    """scikit-learn's wine table as a user would export it: string labels, one categorical column."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame["strength"] = np.where(frame["alcohol"] > 13, "strong", "light")
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_classification_with_a_categorical_column(make_cfg, wine_csv, tmp_path):
    metrics = train(make_cfg("data=csv", f"data.path={wine_csv}", "data.target=cultivar", "model=mlp",
                             "optimizer.lr=1e-2", "trainer.max_epochs=30"))
    assert metrics["test/acc"] > 0.85
    meta = json.loads(next((tmp_path.parent).rglob("csv-*/meta.json")).read_text())
    assert meta["task"] == "classification" and meta["class_names"] == ["barbera", "barolo", "grignolino"]
    assert meta["source"]["categorical_features"] == {"strength": "one-hot"}
    assert meta["input_shape"] == [15]  # 13 numeric + 2 one-hot columns


def test_your_own_file_edited_since_is_prepared_and_trained_again(make_cfg, wine_csv, tmp_path, capsys):
    """Before, a table edited at the same path trained on its stale prepared copy, and a run
    directory holding the old file's finished run answered for the new one."""
    import pandas as pd

    from archbench.data.prepare import ensure_prepared
    from archbench.errors import ConfigError

    def cfg(*extra: str):
        return make_cfg("data=csv", f"data.path={wine_csv}", "data.target=cultivar", "model=logistic",
                        *extra, output="mine")

    first = train(cfg())
    pd.read_csv(wine_csv).sample(120, random_state=0).to_csv(wine_csv, index=False)
    capsys.readouterr()
    second = train(cfg())
    said = capsys.readouterr().out
    assert "changed since it was prepared: preparing it again" in said and "training afresh" in said
    meta, _ = ensure_prepared(to_dict(cfg().data))
    assert sum(meta.splits.values()) == 120 and second != first
    assert json.loads((tmp_path / "mine" / "run.json").read_text())["data_checksum"] == meta.checksum
    assert train(cfg()) == second and "already holds this run" in capsys.readouterr().out  # unchanged: kept
    pd.read_csv(wine_csv).iloc[:100].to_csv(wine_csv, index=False)
    with pytest.raises(ConfigError, match="cannot resume .*mine: it was trained on other data"):
        train(cfg(f"resume={tmp_path / 'mine'}"))


def test_a_photo_moved_to_another_class_folder_changes_the_source_stamp(tmp_path):
    from archbench.data.prepare import source_stamp

    for label in ("cat", "dog"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "photos" / label / f"{label}{i}.png").write_bytes(b"png" * (i + 1))
    cfg = {"root": str(tmp_path / "photos")}
    before = source_stamp(cfg)
    assert source_stamp(cfg) == before and set(before) == {"root"}
    (tmp_path / "photos" / "cat" / "cat0.png").rename(tmp_path / "photos" / "dog" / "cat0.png")
    assert source_stamp(cfg) != before  # same bytes, other label
    assert source_stamp({**cfg, "md5": "pinned"}) == {}  # official files: checked by MD5 when read


def test_inputs_copied_across_splits_are_counted_at_prepare(wine_csv, tmp_path, capsys):
    """A table whose rows were exported twice: test rows with a twin in training are said."""
    import pandas as pd

    from archbench.data.prepare import prepare

    frame = pd.read_csv(wine_csv)
    doubled = tmp_path / "doubled.csv"
    pd.concat([frame, frame]).to_csv(doubled, index=False)
    data = to_dict(compose(["data=csv", f"data.path={doubled}", "data.target=cultivar"]).data)
    prepare(data, tmp_path / "prepared")
    said = capsys.readouterr().out
    assert "archbench: warning: csv: " in said and "test inputs are identical to training inputs" in said
    prepare({**data, "path": str(wine_csv)}, tmp_path / "clean")
    assert "warning" not in capsys.readouterr().out


def test_csv_regression_decided_by_the_target(make_cfg, tmp_path):
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].map({1.0: "f", 2.0: "m"})
    path = tmp_path / "diabetes.parquet"
    frame.to_parquet(path)
    cfg = make_cfg("data=csv", f"data.path={path}", "data.target=target", "model=linear",
                   "trainer.max_epochs=40", "logger.log_model=true")
    metrics = train(cfg)
    assert "test/r2" in metrics and metrics["test/r2"] > 0.2
    # new rows by column name (before: archbench-predict refused regressors), in the target's units
    uri = json.loads((tmp_path / "run" / "run.json").read_text())["model_uri"]
    frame.head(4).to_csv(tmp_path / "new.csv", index=False)
    printed = call_cli("archbench-predict", str(tmp_path / "new.csv"), "--model-uri", uri,
                       "--tracking-uri", cfg.logger.tracking_uri)
    assert printed.returncode == 0, printed.stderr
    import torch

    from archbench.data.sources.table_file import encode_rows

    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    spec = mlflow.models.get_model_info(uri).metadata["table_input"]
    with torch.no_grad():
        want = mlflow.pytorch.load_model(uri)(torch.from_numpy(encode_rows(frame.head(4), spec, "new.csv")))
    lines = printed.stdout.strip().splitlines()
    assert lines[0] == "index,prediction"
    assert [float(line.split(",")[1]) for line in lines[1:]] == pytest.approx(want[:, 0].tolist(), rel=1e-5)
    assert 50 < float(want.mean()) < 300  # diabetes progression's own units (standardised would be near 0)


def test_a_csv_with_semicolons_tabs_or_decimal_commas_reads_as_the_comma_one(wine_csv):
    """Before, a ; file was one column named "alcohol;malic_acid;…" (the target "not found"), and
    numbers with a decimal comma would have been one-hot categories."""
    import pandas as pd

    from archbench.data.sources.table_file import table

    frame = pd.read_csv(wine_csv)
    variants = {"semicolon.csv": {"sep": ";"}, "tabs.tsv": {"sep": "\t"},
                "spreadsheet.csv": {"sep": ";", "decimal": ","}}
    want = table({"path": str(wine_csv), "target": "cultivar"})
    for name, style in variants.items():
        path = wine_csv.with_name(name)
        frame.to_csv(path, index=False, **style)
        got = table({"path": str(path), "target": "cultivar"})
        np.testing.assert_allclose(got.x_pool, want.x_pool, rtol=1e-6, err_msg=name)
        assert (got.y_pool == want.y_pool).all() and got.class_names == want.class_names
        assert got.info["numeric_features"] == want.info["numeric_features"], name
    assert got.info["decimal_comma_columns"][:2] == ["alcohol", "malic_acid"] and "cultivar" not in \
        got.info["decimal_comma_columns"]
    explicit = table({"path": str(wine_csv.with_name("semicolon.csv")), "target": "cultivar", "sep": ";"})
    np.testing.assert_allclose(explicit.x_pool, want.x_pool, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"unknown data.sep 'x'; valid: auto, ',', ';', tab, '\|'"):
        table({"path": str(wine_csv), "target": "cultivar", "sep": "x"})
    with pytest.raises(DataError, match="data=csv needs data.target=COLUMN, the column to predict; wine.csv's "
                                        "columns: alcohol, malic_acid"):
        table({"path": str(wine_csv)})


def test_a_csv_classifier_labels_new_rows_by_column_name_as_it_labels_its_prepared_rows(
        make_cfg, wine_csv, tmp_path):
    """Before, archbench-predict took prepared numbers only: a new row of one's own table had to be
    one-hot encoded and normalised by hand. The model's MLmodel metadata now says how."""
    import pandas as pd
    import torch

    from archbench.data.prepare import ensure_prepared
    from archbench.data.sources.table_file import encode_rows

    cfg = make_cfg("data=csv", f"data.path={wine_csv}", "data.target=cultivar", "model=mlp",
                   "trainer.max_epochs=1", "logger.log_model=true")
    train(cfg)
    uri = json.loads((tmp_path / "run" / "run.json").read_text())["model_uri"]
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    spec = mlflow.models.get_model_info(uri).metadata["table_input"]
    assert spec["categories"] == {"strength": ["light", "strong"]}
    _, data_dir = ensure_prepared(to_dict(cfg.data))
    prepared = np.concatenate([torch.load(data_dir / f"{split}.pt", weights_only=True)["x"].numpy()
                               for split in ("train", "val", "test")])
    encoded = encode_rows(pd.read_csv(wine_csv), spec, "wine.csv")

    def by_rows(x):
        return x[np.lexsort(x.T[::-1])]

    assert np.array_equal(by_rows(encoded), by_rows(prepared))  # every row, bit for bit
    new_rows = pd.read_csv(wine_csv).drop(columns="cultivar").head(5)
    new_rows.to_csv(tmp_path / "new.csv", sep=";", decimal=",", index=False)  # a spreadsheet's export
    printed = call_cli("archbench-predict", str(tmp_path / "new.csv"), "--model-uri", uri,
                       "--tracking-uri", cfg.logger.tracking_uri)
    assert printed.returncode == 0, printed.stderr
    with torch.no_grad():
        probs = mlflow.pytorch.load_model(uri)(torch.from_numpy(encoded[:5]))
    assert [line.split(",")[2] for line in printed.stdout.strip().splitlines()[1:]] == \
        [f"{p:.4f}" for p in probs.max(dim=1).values.tolist()]
    unseen = new_rows.assign(strength="medium")
    unseen.to_csv(tmp_path / "unseen.csv", index=False)
    new_rows.drop(columns="hue").to_csv(tmp_path / "no_hue.csv", index=False)
    for name, said in [("unseen.csv", "column 'strength' has 'medium', a value training never saw (known: light, strong)"),
                       ("no_hue.csv", "no column(s) hue; the model reads alcohol, ")]:
        refused = call_cli("archbench-predict", str(tmp_path / name), "--model-uri", uri,
                           "--tracking-uri", cfg.logger.tracking_uri)
        assert refused.returncode == 2 and refused.stdout == "", refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line == f"archbench-predict: error: {tmp_path / name}: {said}" or said in line, line


def test_a_built_in_table_classifier_takes_rows_by_its_column_names(make_cfg, tmp_path):
    """scikit-learn's tables name their columns too: breast_cancer's models read a .csv of rows
    headed "mean radius", … as their prepared rows, bit for bit."""
    import pandas as pd
    import torch
    from sklearn.datasets import load_breast_cancer

    from archbench.data.prepare import ensure_prepared
    from archbench.data.sources.table_file import encode_rows

    cfg = make_cfg("data=breast_cancer", "model=logistic", "trainer.max_epochs=1", "logger.log_model=true")
    train(cfg)
    uri = json.loads((tmp_path / "run" / "run.json").read_text())["model_uri"]
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    spec = mlflow.models.get_model_info(uri).metadata["table_input"]
    frame = load_breast_cancer(as_frame=True).frame
    _, data_dir = ensure_prepared(to_dict(cfg.data))
    prepared = np.concatenate([torch.load(data_dir / f"{split}.pt", weights_only=True)["x"].numpy()
                               for split in ("train", "val", "test")])
    encoded = encode_rows(frame, spec, "frame")
    assert np.array_equal(encoded[np.lexsort(encoded.T[::-1])], prepared[np.lexsort(prepared.T[::-1])])
    frame.sample(4, random_state=0).to_csv(tmp_path / "patients.csv", index=False)
    printed = call_cli("archbench-predict", str(tmp_path / "patients.csv"), "--model-uri", uri,
                       "--tracking-uri", cfg.logger.tracking_uri)
    assert printed.returncode == 0, printed.stderr
    with torch.no_grad():
        probs = mlflow.pytorch.load_model(uri)(torch.from_numpy(encode_rows(
            pd.read_csv(tmp_path / "patients.csv"), spec, "patients.csv")))
    assert [line.split(",")[2] for line in printed.stdout.strip().splitlines()[1:]] == \
        [f"{p:.4f}" for p in probs.max(dim=1).values.tolist()]


def test_csv_bad_input_is_one_clear_error_and_writes_nothing(make_cfg, wine_csv, tmp_path, data_root):
    before = set(data_root.iterdir())
    with pytest.raises(DataError, match="target column 'grape' not in wine.csv; columns: alcohol"):
        train(make_cfg("data=csv", f"data.path={wine_csv}", "data.target=grape"))
    holes = wine_csv.with_name("holes.csv")
    holes.write_text(wine_csv.read_text().replace("\n14.23,", "\n,", 1))
    with pytest.raises(DataError, match=r"missing values in column\(s\) alcohol \(1\): set data.missing"):
        train(make_cfg("data=csv", f"data.path={holes}", "data.target=cultivar"))
    one_class = tmp_path / "one.csv"
    one_class.write_text("a,b,label\n1,2,x\n3,4,x\n5,6,x\n")
    with pytest.raises(DataError, match="has one class only"):
        train(make_cfg("data=csv", f"data.path={one_class}", "data.target=label"))
    with pytest.raises(ConfigError, match="data.features must name other columns than the target"):
        train(make_cfg("data=csv", f"data.path={wine_csv}", "data.target=cultivar",  # was a traceback
                       "data.features=[alcohol,cultivar]"))
    rare = tmp_path / "rare.csv"  # before: sklearn's "Classes with too few members are: [3]", by index
    rare.write_text(wine_csv.read_text().replace(",barolo,", ",nebbiolo,", 1))
    with pytest.raises(ConfigError, match=r"too few examples of class\(es\) 'nebbiolo' \(1\): a stratified"):
        train(make_cfg("data=csv", f"data.path={rare}", "data.target=cultivar"))
    with pytest.raises(ConfigError, match=r"of class\(es\) '1\.\d+' \(1\), .* and 97 more: .* data.task=regression\)$"):
        train(make_cfg("data=csv", f"data.path={wine_csv}", "data.target=color_intensity", "data.task=classification"))
    with pytest.raises(DataError, match="data.task=regression needs a numeric target; 'cultivar' holds text"):
        train(make_cfg("data=csv", f"data.path={wine_csv}", "data.target=cultivar", "data.task=regression"))
    assert {p for p in data_root.iterdir() if not p.name.startswith(".")} == \
        {p for p in before if not p.name.startswith(".")}
    metrics = train(make_cfg("data=csv", f"data.path={holes}", "data.target=cultivar", "data.missing=drop",
                             "model=logistic", "optimizer.lr=5e-2", "trainer.max_epochs=10"))
    assert metrics["test/acc"] > 0.7


def test_whole_number_labels_read_as_floats_are_classes(wine_csv, tmp_path):
    """A label column with a gap is read as floats (0.0, 1.0, 2.0): before, that made the table a
    regression, and classes named "0.0"."""
    import pandas as pd

    from archbench.data.prepare import prepare

    frame = pd.read_csv(wine_csv)
    frame["cultivar"] = frame["cultivar"].map({"barolo": 0, "grignolino": 1, "barbera": 2}).astype(float)
    frame.loc[3, "cultivar"] = np.nan
    frame.to_csv(tmp_path / "coded.csv", index=False)
    data = to_dict(compose(["data=csv", f"data.path={tmp_path / 'coded.csv'}", "data.target=cultivar",
                            "data.missing=drop"]).data)
    meta = prepare(data, tmp_path / "prepared")
    assert meta.task == "classification" and meta.class_names == ["0", "1", "2"]


def test_identifier_text_columns_are_left_out_unless_named(wine_csv, tmp_path, capsys):
    """A name or ticket column one-hot would be a column per row, and every new row's value one
    training never saw (predict refuses it): left out with a warning, kept when data.features asks."""
    import pandas as pd

    from archbench.data.prepare import prepare

    frame = pd.read_csv(wine_csv)
    frame.insert(0, "bottle", [f"bottle no. {i}" for i in range(len(frame))])
    path = tmp_path / "bottles.csv"
    frame.to_csv(path, index=False)
    data = to_dict(compose(["data=csv", f"data.path={path}", "data.target=cultivar"]).data)
    meta = prepare(data, tmp_path / "default")
    assert "column(s) bottle (178 values) left out: text columns with more than data.max_categories=100" \
        in capsys.readouterr().out
    assert meta.input_shape == [15] and meta.source["left_out"] == {"bottle": 178}  # as without it
    named = prepare({**data, "features": ["bottle", "alcohol"]}, tmp_path / "named")
    assert "left out" not in capsys.readouterr().out and named.input_shape == [179]
    # a Parquet file's dates: one-hot they were categories no new row's date could match
    frame.insert(1, "bottled", pd.date_range("2020-01-01", periods=len(frame), freq="7D"))
    frame.to_parquet(tmp_path / "dated.parquet")
    dated = prepare({**data, "path": str(tmp_path / "dated.parquet")}, tmp_path / "dated")
    assert "column(s) bottled left out: dates or durations" in capsys.readouterr().out
    assert dated.input_shape == [15] and dated.source["left_out"] == {"bottle": 178, "bottled": 178}
    with pytest.raises(ConfigError, match="data.features: bottled hold dates or durations"):
        prepare({**data, "path": str(tmp_path / "dated.parquet"), "features": ["bottled", "alcohol"]}, tmp_path / "d2")


def test_mean_imputation_uses_the_training_split_only_and_never_fills_the_target(wine_csv, tmp_path, capsys):
    """Before, data.missing=mean filled gaps with the whole table's means (test rows leaked into
    training), filled a numeric target's gaps too (made-up labels, scored as real ones) and dropped
    rows with an empty category unsaid."""
    import pandas as pd
    import torch

    from archbench.data.prepare import prepare
    from archbench.data.sources.table_file import encode_rows, table_input

    frame = pd.read_csv(wine_csv).drop(columns="cultivar")
    frame.loc[::4, "magnesium"] = np.nan
    frame.loc[1::9, "strength"] = np.nan
    frame.loc[2, "alcohol"] = np.nan  # the target of this regression
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    data = to_dict(compose(["data=csv", f"data.path={path}", "data.target=alcohol", "data.missing=mean"]).data)
    meta = prepare(data, tmp_path / "prepared")
    said = capsys.readouterr().out
    assert f"missing values {frame['magnesium'].isna().sum()} in magnesium, 20 in strength, 1 row(s) " \
           "without a target (alcohol) dropped" in said
    splits = {s: torch.load(tmp_path / "prepared" / f"{s}.pt", weights_only=True) for s in ("train", "val", "test")}
    assert sum(len(split["y"]) for split in splits.values()) == len(frame) - 1  # nothing else dropped
    assert all(torch.isfinite(split["x"]).all() and torch.isfinite(split["y"]).all() for split in splits.values())
    column = meta.source["columns"].index("magnesium")
    stats = meta.normalization
    train_x = splits["train"]["x"][:, column].numpy() * stats["std"][column] + stats["mean"][column]
    known = train_x[~np.isclose(train_x, stats["mean"][column], atol=1e-3)]
    assert stats["mean"][column] == pytest.approx(known.mean(), rel=1e-4)  # the training rows' mean only
    assert stats["mean"][column] != pytest.approx(frame["magnesium"].mean(), rel=1e-4)
    # new rows are filled as training was: an empty value reads as the training mean
    spec = table_input(meta.source, stats)
    rows = frame.head(2).copy()
    rows.loc[0, "magnesium"], rows.loc[1, "strength"] = np.nan, np.nan
    encoded = encode_rows(rows, spec, "new.csv")
    assert encoded[0, column] == 0.0
    assert [encoded[1, meta.source["columns"].index(f"strength_{v}")] for v in ("light", "strong")] == \
        pytest.approx([-stats["mean"][i] / stats["std"][i] for i in (
            meta.source["columns"].index("strength_light"), meta.source["columns"].index("strength_strong"))])
    with pytest.raises(DataError, match="has an empty value"):  # a model trained without gaps refuses them
        encode_rows(rows, {**spec, "missing": "error"}, "new.csv")


@pytest.fixture
def digit_images(tmp_path) -> Path:
    """scikit-learn's digits written as one PNG folder per class (3 classes, 8×8 grayscale)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path / "images"
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if label < 3:
            folder = root / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{index}.png")
    return root


def test_image_folder_trains_a_cnn(make_cfg, digit_images):
    cfg = make_cfg("data=image_folder", f"data.root={digit_images}", "data.image_size=16", "model=cnn",
                   "trainer.max_epochs=3")
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.8
    from archbench.data.prepare import ensure_prepared

    meta, _ = ensure_prepared(to_dict(cfg.data))
    assert meta.class_names == ["digit0", "digit1", "digit2"] and meta.input_shape == [1, 16, 16]


@pytest.mark.parametrize("model", ["model=cnn data.channels=3 +data.normalize=per_channel",
                                   "model=lstm data.layout=rows"])
def test_an_image_classifier_labels_image_files_as_it_labels_their_prepared_tensors(
        make_cfg, tmp_path, digit_images, data_root, model):
    """Before, archbench-predict took prepared tensors only: a new photo had to be resized and
    normalised by hand. The model's MLmodel metadata now says how its training images were read."""
    import torch

    from archbench.data.datamodule import as_rows
    from archbench.data.images import image_files, model_inputs, read_image
    from archbench.data.prepare import ensure_prepared

    train_root, test_root = digit_images / "train", digit_images / "test"
    for folder in sorted(digit_images.iterdir()):  # a given test split: its rows are these files, in order
        (test_root / folder.name).mkdir(parents=True)
        for path in image_files(folder)[:4]:
            path.rename(test_root / folder.name / path.name)
        train_root.mkdir(exist_ok=True)
        folder.rename(train_root / folder.name)
    cfg = make_cfg("data=image_folder", f"data.root={digit_images}", "data.image_size=12", *model.split(),
                   "trainer.max_epochs=1", "logger.log_model=true")
    train(cfg)
    uri = json.loads((tmp_path / "run" / "run.json").read_text())["model_uri"]
    _, data_dir = ensure_prepared(to_dict(cfg.data))
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    loaded = mlflow.pytorch.load_model(uri)
    settings = mlflow.models.get_model_info(uri).metadata["image_input"]
    assert settings["normalization"]["per"] == ("channel" if "per_channel" in model else "global")
    files = [f for c in sorted((digit_images / "test").iterdir()) for f in image_files(c)]
    images = np.stack([read_image(f, settings["channels"], tuple(settings["size"])) for f in files])
    prepared = torch.load(data_dir / "test.pt", weights_only=True)["x"]
    with torch.no_grad():
        from_files = loaded(model_inputs(images, settings))
        from_tensors = loaded(as_rows(prepared) if "rows" in model else prepared)
    assert torch.equal(from_files, from_tensors)
    printed = call_cli("archbench-predict", str(digit_images / "test" / "digit1"), "--model-uri", uri,
                       "--tracking-uri", cfg.logger.tracking_uri)
    assert printed.returncode == 0, printed.stderr
    rows = [line.split(",") for line in printed.stdout.strip().splitlines()[1:]]
    assert [row[-1] for row in rows] == [str(f) for f in files[4:8]]
    assert [row[2] for row in rows] == [f"{p:.4f}" for p in from_tensors[4:8].max(dim=1).values.tolist()]


def test_predict_refuses_image_files_it_cannot_label_in_one_line(make_cfg, tmp_path, digit_images):
    table = make_cfg("data=breast_cancer", "model=logistic", "trainer.max_epochs=1", "logger.log_model=true",
                     output="table")
    train(table)
    uri = json.loads((tmp_path / "table" / "run.json").read_text())["model_uri"]
    photo = next(iter(sorted((digit_images / "digit0").iterdir())))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty").mkdir()
    images = make_cfg("data=image_folder", f"data.root={digit_images}", "data.image_size=8", "model=cnn",
                      "trainer.max_epochs=1", "logger.log_model=true", output="images")
    train(images)
    image_model = json.loads((tmp_path / "images" / "run.json").read_text())["model_uri"]
    for model_uri, path, said in [
            (uri, photo, "does not say how to read image files (not an image classifier"),
            (image_model, tmp_path / "broken.png", f"unreadable image {tmp_path / 'broken.png'}"),
            (image_model, tmp_path / "empty", f"no image files (PNG, JPEG, BMP, GIF, TIFF or WebP) in {tmp_path / 'empty'}"),
            (image_model, tmp_path / "none.png", f"no input file {tmp_path / 'none.png'}")]:
        result = call_cli("archbench-predict", str(path), "--model-uri", model_uri,
                          "--tracking-uri", table.logger.tracking_uri)
        assert result.returncode == 2 and result.stdout == "", result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"archbench-predict: error: {said}") or said in line, line


def test_a_16_bit_png_keeps_its_grey_levels(tmp_path):
    """Before, Pillow's convert("L") clipped 16-bit values at 255: every pixel above 255/65535 of
    full scale read as white, in training (image_folder) and in archbench-predict alike."""
    from PIL import Image

    from archbench.data.images import read_image

    ramp = (np.arange(16, dtype=np.float64).reshape(4, 4) * 65535 / 15).round().astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode.startswith("I")
    grey = read_image(tmp_path / "ramp.png", 1, (4, 4))
    np.testing.assert_allclose(grey[0], ramp / 65535, atol=1e-6)
    rgb = read_image(tmp_path / "ramp.png", 3, (4, 4))
    assert rgb.shape == (3, 4, 4) and np.array_equal(rgb[0], rgb[2]) and np.array_equal(rgb[1], grey[0])
    eight_bit = (ramp // 257).astype(np.uint8)
    Image.fromarray(eight_bit).save(tmp_path / "ramp8.png")
    np.testing.assert_allclose(read_image(tmp_path / "ramp8.png", 1, (4, 4))[0], eight_bit / 255, atol=1e-6)


def test_bmp_gif_tiff_and_webp_images_are_read_like_png(tmp_path):
    """Before, an image folder read .png/.jpg/.jpeg only and silently skipped other files Pillow reads."""
    from PIL import Image

    from archbench.data.images import image_files, read_image

    pixels = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    for suffix in ("png", "bmp", "gif", "tif", "webp"):
        Image.fromarray(pixels).save(tmp_path / f"x.{suffix}", **({"lossless": True} if suffix == "webp" else {}))
    (tmp_path / "notes.txt").write_text("not an image")
    files = image_files(tmp_path)
    assert [f.suffix for f in files] == [".bmp", ".gif", ".png", ".tif", ".webp"]
    for file in files:
        assert np.array_equal(read_image(file, 1, (8, 8))[0], pixels / np.float32(255)), file.name


def test_a_photo_stored_sideways_is_read_upright(tmp_path):
    """Phones store a portrait photo as landscape pixels plus an EXIF orientation; before, the net
    saw it sideways (Pillow does not apply the tag on its own)."""
    from PIL import Image

    from archbench.data.images import read_image

    pixels = np.zeros((4, 6), dtype=np.uint8)
    pixels[0] = 255  # the stored top row
    photo = Image.fromarray(pixels)
    exif = photo.getexif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    photo.save(tmp_path / "portrait.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "portrait.jpg", 1, (6, 4))[0] > 0.5
    assert shown[:, -1].all() and not shown[:, :-1].any()  # the stored top row is the shown right edge


def test_a_transparent_drawing_is_read_over_white_as_a_viewer_shows_it(tmp_path):
    """Black strokes on a transparent background (a canvas export, an icon): the transparent pixels
    hold black too, so converted as they were the image read all black. An opaque image is unchanged."""
    from PIL import Image

    from archbench.data.images import read_image

    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[1:5, 2, 3] = 255  # an opaque black stroke; everything else transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "drawing.png")
    grey = read_image(tmp_path / "drawing.png", 1, (6, 6))[0]
    stroke = np.zeros((6, 6), dtype=bool)
    stroke[1:5, 2] = True
    assert (grey[stroke] == 0).all() and (grey[~stroke] == 1).all()
    rgba[..., :3], rgba[..., 3] = 90, 255  # opaque grey: as its RGB reads
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "opaque_rgb.png")
    for channels in (1, 3):
        assert np.array_equal(read_image(tmp_path / "opaque.png", channels, (6, 6)),
                              read_image(tmp_path / "opaque_rgb.png", channels, (6, 6)))


def test_files_an_image_folder_skips_are_said(tmp_path, digit_images, capsys):
    from archbench.data.prepare import prepare

    (digit_images / "digit0" / "notes.txt").write_text("where these came from")
    (digit_images / "digit0" / "IMG_1.heic").write_bytes(b"ftypheic")
    prepare(to_dict(compose(["data=image_folder", f"data.root={digit_images}"]).data), tmp_path / "out")
    assert (f"archbench: warning: {digit_images}: skipped files that are not images archbench reads "
            f"(PNG, JPEG, BMP, GIF, TIFF or WebP): 1 .heic, 1 .txt in digit0") in capsys.readouterr().out


def test_image_folder_bad_input(make_cfg, tmp_path, digit_images):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class sub-folders in .*empty"):
        train(make_cfg("data=image_folder", f"data.root={empty}"))
    (digit_images / "digit1" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="unreadable image .*broken.png"):
        train(make_cfg("data=image_folder", f"data.root={digit_images}"))
    # a phone's photos Pillow cannot read (HEIC): before, skipped without a word, the class then
    # "too few members" or empty
    phone = tmp_path / "phone"
    (phone / "cats").mkdir(parents=True)
    shutil.copytree(digit_images / "digit0", phone / "dogs")
    for i in range(3):
        (phone / "cats" / f"IMG_{i}.HEIC").write_bytes(b"ftypheic")
    with pytest.raises(DataError, match=r"class folder .*cats holds no image files .*only 3 \.heic: convert them"):
        train(make_cfg("data=image_folder", f"data.root={phone}"))


def test_an_image_tree_with_sub_folders_and_a_macs_leftovers_reads_as_the_flat_one(digit_images, tmp_path):
    """Photos kept in dated sub-folders are the class's images (before, unsaid and left out: a class
    of 0 images); a Mac zip's ``._*`` copies and ``__MACOSX/`` folder are not images (before, an
    "unreadable image" error, and a third class)."""
    from archbench.data.sources.image_folder import image_folder

    nested = tmp_path / "nested"
    for folder in sorted(digit_images.iterdir()):
        for index, path in enumerate(sorted(folder.iterdir())):
            moved = nested / folder.name / (f"{2020 + index % 3}" if index % 2 else "") / path.name
            moved.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, moved)
            if index == 0:
                (moved.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (nested / "__MACOSX" / "digit0").mkdir(parents=True)
    (nested / "__MACOSX" / "digit0" / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    (nested / "digit1" / ".thumbnails").mkdir()
    (nested / "digit1" / ".thumbnails" / "1.png").write_bytes(b"not an image")
    flat, deep = image_folder({"root": str(digit_images)}), image_folder({"root": str(nested)})
    assert deep.class_names == flat.class_names == ["digit0", "digit1", "digit2"]
    assert len(deep.y_pool) == len(flat.y_pool) and np.bincount(deep.y_pool).tolist() == np.bincount(flat.y_pool).tolist()
    order = np.lexsort(flat.x_pool.reshape(len(flat.x_pool), -1).T)
    again = np.lexsort(deep.x_pool.reshape(len(deep.x_pool), -1).T)
    assert np.array_equal(flat.x_pool[order], deep.x_pool[again])  # the same images, whatever the folders


def test_an_image_tree_split_into_train_valid_test_uses_each_split_as_given(digit_images, tmp_path):
    """Kaggle's layout, Train/ valid/ test/ (any case): before, valid/ was left out unsaid (its images
    unused, validation carved from training); Train/ alone was read as one class named "Train"."""
    from archbench.data.prepare import prepare
    from archbench.data.sources.image_folder import image_folder

    tree = tmp_path / "kaggle"
    for folder in sorted(digit_images.iterdir()):
        for index, path in enumerate(sorted(folder.iterdir())):
            split = ("Train", "Train", "Train", "valid", "test")[index % 5]
            (tree / split / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tree / split / folder.name / path.name)
    counted = {split: len(list((tree / split).rglob("*.png"))) for split in ("Train", "valid", "test")}
    meta = prepare(to_dict(compose(["data=image_folder", f"data.root={tree}"]).data), tmp_path / "prepared")
    assert meta.class_names == ["digit0", "digit1", "digit2"]
    assert meta.splits == {"train": counted["Train"], "val": counted["valid"], "test": counted["test"]}
    assert meta.source["validation"] == "given (valid/ sub-tree)" and meta.source["test"] == "given (test/ sub-tree)"
    with pytest.raises(ConfigError, match="comes with its own validation split .*: drop data.val_fold"):
        prepare(to_dict(compose(["data=image_folder", f"data.root={tree}", "data.val_fold=0"]).data), tmp_path / "cv")
    shutil.rmtree(tree / "valid")
    shutil.rmtree(tree / "test")
    alone = image_folder({"root": str(tree)})  # Train/ alone: its classes, validation and test carved
    assert alone.class_names == ["digit0", "digit1", "digit2"] and alone.x_test is None and alone.x_val is None
    (tree / "test").mkdir()
    with pytest.raises(DataError, match=r"test holds no image files in its class folders \(digit0, digit1, digit2\)"):
        image_folder({"root": str(tree)})
    (tree / "test" / "digit7").mkdir(parents=True)
    shutil.copy(next((digit_images / "digit0").iterdir()), tree / "test" / "digit7" / "a.png")
    with pytest.raises(DataError, match=r"test has class folder\(s\) digit7 that .*Train lacks"):
        image_folder({"root": str(tree)})


@pytest.mark.slow
def test_bad_own_data_on_the_command_line_is_one_line_exit_2(tmp_path, wine_csv):
    env = {"ARCHBENCH_ROOT": str(REPO)}
    result = run_cli("archbench-train", "data=csv", f"data.path={tmp_path / 'nope.csv'}", "data.target=x",
                     f"paths.data_dir={tmp_path / 'prepared'}", f"paths.output_root={tmp_path / 'out'}",
                     f"logger.tracking_uri=sqlite:///{tmp_path / 'm.db'}", env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"archbench-train: error: table not found: {tmp_path / 'nope.csv'}; "
                     f"set data.path=FILE (a .csv or .parquet)"]
    assert not (tmp_path / "prepared").exists() or not any((tmp_path / "prepared").glob("csv*"))


# --- prepared data never clobbered -------------------------------------------------------
def test_a_variant_prepares_into_its_own_directory(make_cfg, data_root):
    from archbench.data.prepare import ensure_prepared, variant_dir

    default = to_dict(make_cfg("data=mnist1d").data)
    shuffled = to_dict(make_cfg("data=mnist1d", "data.generate.shuffle_seq=true").data)
    assert variant_dir(default) == data_root / "mnist1d"
    assert variant_dir(shuffled).name.startswith("mnist1d-") and variant_dir(shuffled) != variant_dir(default)
    meta_default, _ = ensure_prepared(default)
    meta_shuffled, shuffled_dir = ensure_prepared(shuffled)
    assert meta_default.checksum != meta_shuffled.checksum
    assert ensure_prepared(default)[0].checksum == meta_default.checksum  # untouched by the variant
    assert json.loads((shuffled_dir / "meta.json").read_text())["extra"]["config"]["generate"]["shuffle_seq"]


def test_prepared_default_is_found_without_composing_the_default_config(make_cfg, data_root, monkeypatch):
    """A run on data its directory already holds skips the default config's Hydra composition
    (start-up time); a variant of it still gets its own directory."""
    prepare = importlib.import_module("archbench.data.prepare")

    default = to_dict(make_cfg("data=digits").data)
    shuffled = to_dict(make_cfg("data=digits", "data.seed=7").data)
    prepare.ensure_prepared(default)

    def composed(name: str) -> None:
        raise AssertionError(f"composed the default config of {name}")

    monkeypatch.setattr(prepare, "default_prepare_config", composed)
    assert prepare.variant_dir(default) == data_root / "digits"
    with pytest.raises(AssertionError, match="composed the default config of digits"):
        prepare.variant_dir(shuffled)  # not what <dir> holds: the default decides
    monkeypatch.undo()
    assert prepare.variant_dir(shuffled).name.startswith("digits-")


@pytest.mark.slow
def test_two_runs_on_two_variants_at_once_each_read_their_own(tmp_path):
    """Two processes, same dataset, different variants, started together: both succeed and each
    run's MLflow tag records the checksum of the data it read (its own variant's)."""
    common = [f"paths.data_dir={tmp_path / 'prepared'}", f"paths.output_root={tmp_path / 'out'}",
              "data=mnist1d", "model=logistic", "trainer.max_epochs=1", "callbacks.progress_bar=none",
              "logger.log_model=false", "threads=1"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "ARCHBENCH_ROOT": str(REPO)}
    variants = {"plain": "data.generate.seed=42", "shuffled": "data.generate.shuffle_seq=true"}
    full_env = {**__import__("os").environ, **env}
    processes = {name: subprocess.Popen([str(BIN / "archbench-train"), *common, arg,
                                         f"hydra.run.dir={tmp_path / name}"], env=full_env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for name, arg in variants.items()}
    for process in processes.values():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    checksums = {}
    for name in variants:
        run = client.get_run(json.loads((tmp_path / name / "run.json").read_text())["run_id"])
        data_dir = Path(run.data.tags["data_dir"])
        assert run.data.tags["data_checksum"] == json.loads((data_dir / "meta.json").read_text())["checksum"]
        checksums[name] = run.data.tags["data_checksum"]
    assert checksums["plain"] != checksums["shuffled"]


# --- presets that never override an explicit choice --------------------------------------
def test_explicit_groups_and_keys_win_over_the_recipe():
    cfg = compose(["data=mnist1d", "model=transformer", "optimizer=sgd"])
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.01  # the group's own values
    assert cfg.trainer.max_epochs == 70 and cfg.model.net.patch_stride == 4  # the rest of the recipe
    assert "optimizer.name" in cfg.recipe_applied.kept
    cfg = compose(["data=tinyshakespeare", "model=transformer", "scheduler=cosine", "optimizer.lr=1e-4"])
    assert cfg.scheduler.name == "cosine" and cfg.optimizer.lr == 1e-4 and cfg.optimizer.name == "adamw"
    assert compose(["data=mnist1d", "model=transformer"]).optimizer.name == "adamw"
    for drop in ("recipe=null", "recipe=none", "~recipe"):
        assert compose(["data=mnist1d", "model=transformer", drop]).optimizer.name == "adam"
    assert compose(["data=digits", "model=mlp", "recipe=mnist1d_mlp"]).recipe_applied.file.endswith(
        "mnist1d_mlp.yaml")
    # where it trains is not its budget: trainer=gpu / ddp keep the recipe's epochs (before: 20)
    for placement in ("trainer=gpu", "trainer=ddp", "trainer=ddp_cpu", "trainer=auto"):
        assert compose(["data=mnist1d", "model=transformer", placement]).trainer.max_epochs == 70, placement
    assert compose(["data=mnist1d", "model=transformer", "trainer=gpu", "trainer.max_epochs=3"]).trainer.max_epochs == 3


def test_a_recipe_key_the_config_lacks_is_refused_with_the_closest_keys():
    """Applied with force_add, a typo (data.batch_sise) used to be added and never read."""
    from omegaconf import OmegaConf, open_dict

    from archbench.config import apply_recipe

    def applying(preset: dict):
        cfg = compose(["data=digits", "model=mlp", "recipe=null"])
        with open_dict(cfg):
            cfg.recipe_preset = OmegaConf.create(preset)
        return apply_recipe(cfg, ["data=digits", "model=mlp"])

    with pytest.raises(ConfigError, match=r"^conf/recipe/digits_mlp.yaml sets data.batch_sise, a key the config "
                                          r"does not have; did you mean data.batch_size, "):
        applying({"data": {"batch_sise": 3}})
    with pytest.raises(ConfigError, match=r"sets nosuch, a key the config does not have$"):
        applying({"nosuch": 3})
    assert "sets data.batch_size, optimizer.rho" in applying({"data": {"batch_size": 3}, "optimizer": {"rho": 0.9}})


@pytest.mark.slow
def test_cfg_job_shows_the_effective_config_and_the_recipe_line():
    result = run_cli("archbench-train", "data=mnist1d", "model=transformer", "optimizer=sgd", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "  name: sgd\n" in result.stdout and "adamw" not in result.stdout
    assert result.stdout.startswith("archbench: recipe conf/recipe/mnist1d_transformer.yaml sets ")
    assert "your choice kept: optimizer.lr, optimizer.name, optimizer.weight_decay" in result.stdout
    bad = run_cli("archbench-train", "data=digits", "model=mlp", "recipe=nope")
    assert bad.returncode == 2 and "unknown recipe 'nope'; valid: " in bad.stderr


def test_every_recipe_names_a_pair_and_keeps_explicit_groups():
    """Every recipe of conf/recipe (datasets that need files included) is a (data, model) pair of
    conf/ and leaves explicit choices alone; a pair without a recipe composes as well. Only pairs
    with a recipe can override anything, so those are the ones composed."""
    groups = config_groups()
    pairs = {f"{d}_{m}": (d, m) for d in groups["data"] for m in groups["model"]}
    assert set(groups["recipe"]) <= pairs.keys(), set(groups["recipe"]) - pairs.keys()
    without_recipe = next(pair for name, pair in sorted(pairs.items()) if name not in groups["recipe"])
    for data, model in [pairs[name] for name in groups["recipe"]] + [without_recipe]:
        cfg = compose([f"data={data}", f"model={model}", "optimizer=rmsprop", "scheduler=none",
                       "trainer=cpu", "trainer.max_epochs=3"])
        assert (cfg.optimizer.name, cfg.scheduler.name, cfg.trainer.max_epochs) == ("rmsprop", "none", 3)
        assert cfg.recipe_applied is None or cfg.recipe_applied.file == f"conf/recipe/{data}_{model}.yaml"


@pytest.mark.parametrize("data", EMBEDDED)
def test_every_combination_composes_and_builds_or_refuses_clearly(data, data_root):
    """Every model of conf/ on each embedded dataset, with the explicit groups kept: the net, the
    optimizer and the scheduler instantiate, or the pair is refused in one line."""
    import torch

    from archbench.data.prepare import ensure_prepared
    from archbench.tasks import task_name
    from archbench.tasks.optim import build_optimizer, build_scheduler

    for model in config_groups()["model"]:
        cfg = compose([f"data={data}", f"model={model}", f"paths.data_dir={data_root}",
                       "optimizer=momentum", "scheduler=step"])
        assert cfg.optimizer.name == "momentum" and cfg.scheduler.name == "step", (data, model)
        meta, _ = ensure_prepared(to_dict(cfg.data))
        task = load_task(task_name(cfg.model, cfg.data, meta.task))
        try:
            task.check(cfg, meta)
            shape = list(meta.input_shape)
            nets = ([task.build_net(cfg, shape, meta)] if task.net_key in cfg.model or task.name != "adversarial"
                    else [])
        except IncompatibleError as err:
            assert "\n" not in str(err) and cfg.model.name in str(err)
            continue
        for net in nets:
            optimizer = build_optimizer(net.parameters(), to_dict(cfg.optimizer))
            assert build_scheduler(optimizer, to_dict(cfg.scheduler), 10, 100) is not None
            assert isinstance(net, torch.nn.Module)


def test_unknown_net_optimizer_and_scheduler_keys_are_errors(make_cfg):
    with pytest.raises(ConfigError, match=r"model mlp: unknown net argument\(s\) \['hiden'\] for MLP; valid: "):
        train(make_cfg("data=digits", "model=mlp", "+model.net.hiden=[64]"))
    with pytest.raises(ConfigError, match=r"optimizer adam: unknown key\(s\) \['momentum'\]; valid: "):
        train(make_cfg("data=digits", "model=mlp", "+optimizer.momentum=0.9"))
    with pytest.raises(ConfigError, match=r"scheduler cosine: unknown key\(s\) \['gama'\]; valid: name, min_lr"):
        train(make_cfg("data=digits", "model=mlp", "+scheduler.gama=0.5"))


# --- sweeps decoupled from training ------------------------------------------------------
@pytest.mark.slow
def test_sweep_under_the_joblib_launcher_keeps_the_exact_budget(tmp_path):
    """3 trials, 2 at a time in separate processes (one torch thread each): exactly 3 trials,
    3 child runs under one parent."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_cli("archbench-train", "-m", "hparams_search=lr_wd", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", "data=digits", "model=logistic", "hydra.sweeper.n_trials=3",
                     "trainer.max_epochs=2", "hydra.sweeper.study_name=joblib", f"hydra.sweeper.storage={storage}",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.data_dir={tmp_path / 'prepared'}",
                     f"paths.output_root={tmp_path / 'out'}", "callbacks.progress_bar=none",
                     env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = optuna.load_study(study_name="joblib", storage=storage).trials
    assert [t.number for t in trials] == [0, 1, 2] and {t.state.name for t in trials} == {"COMPLETE"}
    runs = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(
        [mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("archbench").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 3 and len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1
    assert {r.data.params["threads"] for r in children} == {"1"}


# --- layering: no import cycles, no file doing two jobs ----------------------------------
def _archbench_imports(path: Path) -> set[str]:
    """Every ``archbench.*`` module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("archbench"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("archbench"))
    return names


def _module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[module] = {m for m in _archbench_imports(path) if m != module}
    return graph


def test_no_import_cycles():
    graph = _module_graph()
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " → ".join([*trail, module, target]))
            if target in graph and not state.get(target):
                visit(target, [*trail, module])
        state[module] = 2

    for module in graph:
        if not state.get(module):
            visit(module, [])


def test_layers_read_top_down():
    """cli → train → tasks → nets/data/tracking; nets are plain torch; train and tracking know
    nothing of Optuna or sweeps."""
    forbidden = {
        "archbench.nets": ("archbench.tasks", "archbench.train", "archbench.data", "archbench.tracking",
                           "archbench.cli", "archbench.sweep"),
        "archbench.data": ("archbench.tasks", "archbench.train", "archbench.tracking", "archbench.cli",
                           "archbench.sweep", "archbench.provision"),
        "archbench.tasks": ("archbench.train", "archbench.cli", "archbench.sweep", "archbench.provision"),
        "archbench.tracking": ("archbench.tasks", "archbench.train", "archbench.sweep", "archbench.cli"),
        "archbench.train": ("archbench.sweep", "archbench.cli", "archbench.provision"),
    }
    for module, imports in _module_graph().items():
        for layer, banned in forbidden.items():
            if module == layer or module.startswith(layer + "."):
                bad = sorted(i for i in imports if i.startswith(banned))
                assert not bad, f"{module} imports {bad}"
    for path in [PACKAGE / "train.py", *(PACKAGE / "tracking").glob("*.py")]:
        assert "optuna" not in path.read_text(), path
    for path in (PACKAGE / "nets").glob("*.py"):
        text = path.read_text()
        assert not any(w in text for w in ("lightning", "mlflow", "hydra", "omegaconf")), path
