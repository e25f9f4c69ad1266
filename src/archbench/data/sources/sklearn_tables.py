"""scikit-learn's bundled datasets (offline, no download)."""

from __future__ import annotations

from typing import Any

import numpy as np

from archbench.data.sources import Source, sha256_of


def digits(cfg: dict[str, Any]) -> Source:
    """8×8 handwritten digits (1,797 images, pixel values 0–16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return Source(x, y, None, None, "image", [1, 8, 8], [str(c) for c in bunch.target_names],
                  {"origin": "sklearn.datasets.load_digits", "checksum": sha256_of(bunch.data, bunch.target)})


def breast_cancer(cfg: dict[str, Any]) -> Source:
    """Wisconsin breast-cancer table (569 rows, 30 features, 2 classes)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    return Source(x, y, None, None, "tabular", [x.shape[1]], [str(c) for c in bunch.target_names],
                  {"origin": "sklearn.datasets.load_breast_cancer", **_named_columns(bunch.feature_names),
                   "checksum": sha256_of(bunch.data, bunch.target)})


def diabetes(cfg: dict[str, Any]) -> Source:
    """Diabetes progression table (442 rows, 10 features, a real-valued target 25–346), unscaled."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.float32)
    return Source(x, y, None, None, "tabular", [x.shape[1]], [],
                  {"origin": "sklearn.datasets.load_diabetes(scaled=False)",
                   "features": list(bunch.feature_names), **_named_columns(bunch.feature_names),
                   "checksum": sha256_of(bunch.data, bunch.target)},
                  task="regression")


def _named_columns(names) -> dict[str, Any]:
    """A table's numeric columns by name, so its models take new rows by column name
    (``data.sources.table_file.table_input``)."""
    return {"numeric_features": [str(n) for n in names], "categories": {}, "columns": [str(n) for n in names]}
