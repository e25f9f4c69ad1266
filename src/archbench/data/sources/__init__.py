"""Dataset sources: one function per dataset or file format, named by ``source:`` in conf/data/*.yaml.

Each takes the resolved data config (a dict) and returns a ``Source``: the raw train pool (and a
test split when the dataset has an official one). Splitting, normalising and writing are the
prepare engine's job (``archbench.data.prepare``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Source:
    """A dataset as it comes from its source, before validation split and normalisation."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    kind: str  # image | sequence | tabular | text (characters) | tokens (word ids)
    input_shape: list[int]
    class_names: list[str]  # empty for regression
    info: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"  # the learning problem the data poses by default


def md5_of(path) -> str:
    """The MD5 hex digest of a file (the checksum most dataset publishers give)."""
    from pathlib import Path

    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def sha256_of(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()
