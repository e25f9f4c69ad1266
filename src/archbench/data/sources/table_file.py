"""Your own table: a CSV or Parquet file, one row per example, a target column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import Source, sha256_of
from archbench.errors import ConfigError, DataError

MISSING_POLICIES = ("error", "drop", "mean")


SEPARATORS = {"auto": None, ",": ",", ";": ";", "tab": "\t", "|": "|"}


def field_separator(path: Path, asked: str) -> str:
    """The CSV's field separator: ``data.sep``, or with ``auto`` the one Python's csv.Sniffer finds
    in the first lines among , ; tab | (when none stands out, a tab for .tsv, else a comma):
    semicolons are common where a comma is the decimal mark (UCI's wine-quality files, for one)."""
    import csv

    asked = "tab" if asked == "\t" else asked
    if asked not in SEPARATORS:
        valid = ", ".join(name if name.isalpha() else repr(name) for name in SEPARATORS)
        raise ConfigError(f"unknown data.sep {asked!r}; valid: {valid}")
    if SEPARATORS[asked] is not None:
        return SEPARATORS[asked]
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        head = file.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:  # none stands out: what the file's name says
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def read_table(path: Path, sep: str = "auto"):
    """The table, and the columns read as numbers written with a decimal comma."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"table not found: {path.resolve()}; set data.path=FILE (a .csv or .parquet)")
    try:
        if path.suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), []
        separator = field_separator(path, sep)
        return _decimal_commas(pd.read_csv(path, sep=separator), separator)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any parser failure is the file's fault
        raise DataError(f"cannot read {path}: {type(err).__name__}: {err}") from err


DECIMAL_COMMA = r"[+-]?(\d+,\d*|,\d+|\d+)"


def _decimal_commas(frame, separator: str):
    """Text columns whose every value is a number with a decimal comma (14,23: how a spreadsheet
    saves a ; CSV in many locales) as those numbers, not as categories to one-hot. A comma-separated
    file cannot hold them unquoted, so only other separators are looked at."""
    import pandas as pd

    converted = []
    if separator == ",":
        return frame, converted
    for column in frame.select_dtypes(include=["object", "string"]).columns:
        values = frame[column].dropna().astype(str).str.strip()
        if len(values) and values.str.contains(",").any() and values.str.fullmatch(DECIMAL_COMMA).all():
            frame[column] = pd.to_numeric(frame[column].astype(str).str.strip().str.replace(",", "."),
                                          errors="coerce").where(frame[column].notna())
            converted.append(str(column))
    return frame, converted


def _handle_missing(frame, policy: str, target: str):
    """``error``: refuse gaps; ``drop``: drop their rows; ``mean``: drop only rows without a target
    (never imputed) and leave feature gaps for the prepare engine to fill with the training split's
    means (filled here from the whole table, test rows would leak into training)."""
    if policy not in MISSING_POLICIES:
        raise ConfigError(f"unknown data.missing {policy!r}; valid: {', '.join(MISSING_POLICIES)}")
    counts = frame.isna().sum()
    if not counts.any():
        return frame
    if policy == "error":
        worst = ", ".join(f"{c} ({n})" for c, n in counts[counts > 0].items())
        raise DataError(f"missing values in column(s) {worst}: set data.missing=drop (drop those rows) "
                        f"or data.missing=mean (fill numeric columns with the training split's mean)")
    if policy == "drop":
        return frame.dropna()
    gaps = {str(c): int(n) for c, n in counts.items() if n and c != target}
    said = [f"{n} in {c}" for c, n in gaps.items()]
    if counts[target]:
        said.append(f"{int(counts[target])} row(s) without a target ({target}) dropped")
    print(f"archbench: data.missing=mean: missing values {', '.join(said)}; numbers get the training "
          f"split's mean, categories none of their one-hot columns", flush=True)
    return frame[frame[target].notna()]


def _left_out(frame, features: list, max_categories: int, named: bool) -> dict[str, int]:
    """``{column: distinct values}`` of the features left out, each kind said in a warning: dates
    and durations (as categories, no new row's date would be known; one line when ``data.features``
    names them), and, unless named, text columns with more than ``max_categories`` distinct values
    (names, ticket numbers, free text: one-hot, a column per row, and new rows' values unseen)."""
    dates = [c for c in features if frame[c].dtype.kind in "mM"]
    if dates and named:
        raise ConfigError(f"data.features: {', '.join(map(str, dates))} hold dates or durations; archbench reads "
                          f"numbers and categories: derive numeric columns (year, day of year, days since) in the table")
    text = [] if named else [c for c in features if frame[c].dtype.kind not in "iufbmM"]
    many = {c: int(frame[c].nunique()) for c in text if frame[c].nunique() > max_categories}
    if dates:
        print(f"archbench: warning: column(s) {', '.join(map(str, dates))} left out: dates or durations (as "
              f"categories, no new row's date would be known); derive numeric columns from them in the table",
              flush=True)
    if many:
        print(f"archbench: warning: column(s) {', '.join(f'{c} ({n} values)' for c, n in many.items())} left "
              f"out: text columns with more than data.max_categories={max_categories} distinct values (an "
              f"identifier, free text); data.features=[…] names the columns to use", flush=True)
    return {str(c): n for c, n in {**many, **{c: int(frame[c].nunique()) for c in dates}}.items()}


def _decide_task(target, requested: str, max_classes: int) -> str:
    if requested in ("classification", "regression"):
        return requested
    if requested not in ("auto", "", None):
        raise ConfigError(f"data.task={requested!r}; valid: auto, classification, regression")
    if target.dtype.kind in "OUSbc" or str(target.dtype) == "category":
        return "classification"
    if target.dtype.kind in "iu" and target.nunique() <= max_classes:
        return "classification"
    return "regression"


def _columns(frame, target_name: str, cfg: dict[str, Any], name: str) -> tuple[list, dict[str, int]]:
    """The feature columns (``data.features``, else every other column) less those ``_left_out``, and
    those; one line for a missing target or feature, or the target as a feature."""
    columns = ", ".join(map(str, frame.columns))
    if not target_name:
        raise DataError(f"data=csv needs data.target=COLUMN, the column to predict; {name}'s columns: {columns}")
    if target_name not in frame.columns:
        raise DataError(f"target column {target_name!r} not in {name}; columns: {columns} (set data.target=COLUMN)")
    features = list(cfg.get("features") or [c for c in frame.columns if c != target_name])
    absent = [c for c in features if c not in frame.columns]
    if absent:
        raise DataError(f"feature column(s) {absent} not in {name}")
    if target_name in features or len(set(features)) < len(features):
        raise ConfigError(f"data.features must name other columns than the target ({target_name!r}: a model "
                          f"given the answer), each once; got {features}")
    left_out = _left_out(frame, features, int(cfg.get("max_categories", 100)), bool(cfg.get("features")))
    features = [c for c in features if str(c) not in left_out]
    if not features:
        raise DataError(f"{name} has no feature column left besides {target_name!r} (set data.features=[…])")
    return features, left_out


def table(cfg: dict[str, Any]) -> Source:
    """Numeric features as they are, categorical ones one-hot; classification or regression as the
    target column (or ``data.task``) says."""
    import pandas as pd

    path = Path(str(cfg.get("path") or "")).expanduser()
    if not cfg.get("path"):
        raise DataError("data=csv needs data.path=FILE (a .csv or .parquet) and data.target=COLUMN")
    frame, decimal_comma = read_table(path, str(cfg.get("sep") or "auto"))
    target_name = str(cfg.get("target") or "")
    features, left_out = _columns(frame, target_name, cfg, path.name)
    missing = str(cfg.get("missing", "error"))
    frame = _handle_missing(frame[[*features, target_name]], missing, target_name)
    if frame.empty:
        raise DataError(f"{path} has no rows left to learn from")
    target = frame[target_name]
    if target.dtype.kind == "f" and (target == target.round()).all():
        target = target.astype(np.int64)  # 0.0/1.0: labels a column with gaps is read as; classes "0", "1"
    task = _decide_task(target, str(cfg.get("task") or "auto"), int(cfg.get("max_classes", 20)))
    categorical = [c for c in features if frame[c].dtype.kind not in "iufb"]
    x = pd.get_dummies(frame[features], columns=categorical, dtype=np.float32)
    info = {"origin": str(path.resolve()), "target": target_name, "rows": len(frame),
            "numeric_features": [c for c in features if c not in categorical],
            "categorical_features": {c: "one-hot" for c in categorical}, "columns": list(x.columns),
            "categories": {c: [str(v) for v in pd.get_dummies(frame[c]).columns] for c in categorical},
            "decimal_comma_columns": decimal_comma, "missing": missing, "left_out": left_out}
    x_values = x.to_numpy(dtype=np.float32)
    if task == "regression":
        if target.dtype.kind not in "iufb":
            raise DataError(f"data.task=regression needs a numeric target; {target_name!r} holds text "
                            f"({target.astype(str).iloc[0]!r}, …): data.task=classification, or another column")
        y = target.to_numpy(dtype=np.float32)
        info["checksum"] = sha256_of(x_values, y)
        return Source(x_values, y, None, None, "tabular", [x.shape[1]], [], info, task="regression")
    class_names = sorted(target.astype(str).unique())
    if len(class_names) < 2:
        raise DataError(f"target column {target_name!r} has one class only ({class_names[0]!r}): "
                        f"nothing to classify")
    y = target.astype(str).map({name: i for i, name in enumerate(class_names)}).to_numpy(np.int64)
    info["checksum"] = sha256_of(x_values, y)
    return Source(x_values, y, None, None, "tabular", [x.shape[1]], class_names, info)


def table_input(info: dict[str, Any], normalization: dict[str, Any]) -> dict[str, Any] | None:
    """What a model trained on a table needs to take new rows of it (logged in its MLmodel
    metadata): the feature columns, each categorical one's training values, the one-hot column
    order and the training split's per-feature normalisation; None for tables without named columns."""
    if "columns" not in info or "categories" not in info:
        return None
    return {"numeric": list(info["numeric_features"]), "categories": dict(info["categories"]),
            "columns": list(info["columns"]), "normalization": normalization,
            "missing": str(info.get("missing", "error"))}


def encode_rows(frame, spec: dict[str, Any], name: str) -> np.ndarray:
    """New rows of the training table (named columns; others, the target among them, ignored) as
    the model's inputs: one-hot columns as in training, then normalised; empty values filled as in
    training when it was ``data.missing=mean``. One DataError line for a missing column, an empty
    value (other models), a non-numeric value, or a category training never saw."""
    import pandas as pd

    needed = [*spec["numeric"], *spec["categories"]]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DataError(f"{name}: no column(s) {', '.join(map(str, absent))}; the model reads "
                        f"{', '.join(map(str, needed))} (a header row names them)")
    fills = spec.get("missing") == "mean"
    gaps = frame[needed].isna().any(axis=1)
    if gaps.any() and not fills:
        raise DataError(f"{name}: row {int(np.flatnonzero(gaps)[0]) + 1} has an empty value; the model "
                        f"needs every one of {', '.join(map(str, needed))}")
    columns: dict[str, Any] = {}
    for column in spec["numeric"]:
        values = pd.to_numeric(frame[column], errors="coerce")
        wrong = values.isna() & frame[column].notna()
        if wrong.any():
            raise DataError(f"{name}: column {column!r} row {int(np.flatnonzero(wrong)[0]) + 1} "
                            f"is not a number ({frame[column][wrong].iloc[0]!r})")
        columns[column] = values
    for column, known in spec["categories"].items():
        given = frame[column].notna()
        text = frame[column].astype(str)
        unseen = sorted(set(text[given]) - set(known))
        if unseen:
            raise DataError(f"{name}: column {column!r} has {unseen[0]!r}, a value training never saw "
                            f"(known: {', '.join(known)})")
        columns.update({f"{column}_{value}": (text == value) & given for value in known})
    from archbench.data.prepare import normalise

    x = normalise(pd.DataFrame(columns)[spec["columns"]].to_numpy(dtype=np.float32), spec["normalization"])
    return np.where(np.isnan(x), np.float32(0), x) if fills else x  # 0: the training mean, normalised
