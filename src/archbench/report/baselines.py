"""Reference baselines on the very splits the nets saw: scikit-learn models fitted on the prepared
train+val data and scored once on the prepared test split. Cheap, and they catch under-trained nets.

scikit-learn rather than our own code: these are the standard, well-kept implementations users
already trust as a yardstick.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from archbench.tasks.base import RunResult

CLASSIFIERS = ("LogisticRegression", "SVC (RBF)", "HistGradientBoosting")
TEXT_CLASSIFIERS = ("BoW LogisticRegression",)  # TF-IDF-weighted word counts of the same ids
REGRESSORS = ("LinearRegression", "SVR (RBF)", "HistGradientBoosting")


def _estimator(name: str, task: str):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.svm import SVC, SVR

    if task == "classification":
        return {"LogisticRegression": LogisticRegression(max_iter=5000),
                "SVC (RBF)": SVC(),
                "HistGradientBoosting": HistGradientBoostingClassifier(random_state=0)}[name]
    return {"LinearRegression": LinearRegression(), "SVR (RBF)": SVR(),
            "HistGradientBoosting": HistGradientBoostingRegressor(random_state=0)}[name]


def fit_and_score(name: str, task: str, splits: dict[str, dict[str, Any]],
                  target: dict[str, float] | None = None) -> dict[str, float]:
    """Fit on train+val only, score on test: accuracy and macro-F1, or MSE/MAE/R² in target units."""
    return fit_and_predict(name, task, splits, target)[0]


def fit_and_predict(name: str, task: str, splits: dict[str, dict[str, Any]],
                    target: dict[str, float] | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """``fit_and_score``'s metrics, and per test example what the report's paired tests read:
    ``correct`` and ``targets`` (classification) or ``squared_errors`` (regression, target units)."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        x = splits[split]["x"]
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        y = splits[split]["y"]
        return x.reshape(len(x), -1), (y.numpy() if hasattr(y, "numpy") else np.asarray(y))

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = arrays("train"), arrays("val"), arrays("test")
    started = time.perf_counter()
    if name in TEXT_CLASSIFIERS:
        model, x_fit = _bag_of_words_model(np.concatenate([x_train, x_val]))
        x_test = _counts(x_test, x_fit.shape[1])
    else:
        model, x_fit = _estimator(name, task), np.concatenate([x_train, x_val])
    model.fit(x_fit, np.concatenate([y_train, y_val]))
    seconds = time.perf_counter() - started
    predicted = model.predict(x_test)
    if task == "classification":
        return ({"test/acc": float(accuracy_score(y_test, predicted)),
                 "test/f1": float(f1_score(y_test, predicted, average="macro")), "train_seconds": seconds},
                {"correct": predicted == y_test, "targets": y_test})
    mean, std = (target or {}).get("mean", 0.0), (target or {}).get("std", 1.0)
    truth, guess = y_test * std + mean, predicted * std + mean
    return ({"test/mse": float(mean_squared_error(truth, guess)),
             "test/mae": float(mean_absolute_error(truth, guess)),
             "test/r2": float(r2_score(truth, guess)), "train_seconds": seconds},
            {"squared_errors": (guess - truth) ** 2})


def _counts(ids: np.ndarray, width: int):
    """Sparse word counts (rows = texts) of right-padded word ids; <pad> (0) and <unk> (1) dropped."""
    from scipy.sparse import csr_matrix

    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    flat = ids.reshape(-1)
    keep = (flat > 1) & (flat < width)
    return csr_matrix((np.ones(int(keep.sum())), (rows[keep], flat[keep])), shape=(len(ids), width))


def _bag_of_words_model(ids: np.ndarray):
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    counts = _counts(ids, int(ids.max()) + 1)
    return make_pipeline(TfidfTransformer(), LogisticRegression(max_iter=5000)), counts


def pooled_frames(splits: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Spectrograms ``(N, features, frames)`` as each feature's mean and std over the real frames:
    the classic pooled-features input of an SVM on audio."""
    pooled = {}
    for split, tensors in splits.items():
        x, lengths = tensors["x"].numpy(), tensors["lengths"].numpy()
        rows = [np.concatenate([f[:, :n].mean(axis=1), f[:, :n].std(axis=1)]) for f, n in zip(x, lengths, strict=True)]
        pooled[split] = {"x": np.stack(rows), "y": tensors["y"]}
    return pooled


def _folds(runs: list[RunResult], dataset: str) -> bool:
    """Whether some model's replicates on ``dataset`` trained on different data (e.g. one fold per
    held-out speaker): no single split's reference stands beside their mean."""
    per_model: dict[str, set] = {}
    for run in runs:
        if run.run["data"] == dataset:
            per_model.setdefault(run.run["model"], set()).add(run.run.get("data_checksum"))
    return any(len(checksums) > 1 for checksums in per_model.values())


def _prepared_data(runs: list[RunResult], dataset: str, data_root: Path | None) -> tuple[Path, dict] | None:
    """The prepared data ``dataset``'s runs trained on (the same checksum): ``data_root/<name>``,
    else the folder a run recorded (``run.json``'s ``data_dir``: a variant such as ``csv-<hash>``,
    or a run made from another working directory); None when neither holds it any more."""
    mine = [r for r in runs if r.run["data"] == dataset]
    checksums = {r.run.get("data_checksum") for r in mine}
    candidates = ([Path(data_root) / dataset] if data_root is not None else []) + [
        Path(d) for d in sorted({str(r.run.get("data_dir") or "") for r in mine}) if d]
    for data_dir in candidates:
        if (data_dir / "meta.json").is_file():
            meta = json.loads((data_dir / "meta.json").read_text())
            if meta["checksum"] in checksums:
                return data_dir, meta
    return None


def reference_runs(runs: dict[str, list[RunResult]], data_root: Path | None) -> dict[str, list[RunResult]]:
    """Reference rows for every (task, dataset) among ``runs`` whose prepared data is still there
    (``_prepared_data``); a dataset whose data is not is said in one line and gets none."""
    from archbench.data.store import load_all

    references: dict[str, list[RunResult]] = {}
    for task, names in (("classification", CLASSIFIERS), ("regression", REGRESSORS)):
        for dataset in sorted({r.run["data"] for r in runs.get(task, [])}):
            if _folds(runs[task], dataset):
                continue
            found = _prepared_data(runs[task], dataset, data_root)
            if found is None:
                print(f"archbench-compare: {dataset}: no reference rows (the prepared data its runs "
                      f"trained on is in neither {data_root or '--data'} nor the runs' data_dir)", flush=True)
                continue
            data_dir, meta = found
            if meta["kind"] == "text":
                continue
            _, splits = load_all(data_dir)
            if meta["kind"] == "audio":
                splits = pooled_frames(splits)
            for name in TEXT_CLASSIFIERS if meta["kind"] == "tokens" else names:
                metrics, per_example = fit_and_predict(name, task, splits, meta.get("target"))
                run = {"data": dataset, "model": f"{name} (reference)", "reference": True, "run_id": ""}
                references.setdefault(task, []).append(RunResult(data_dir, run, metrics, per_example))
    return references
