"""Prepared-tensor I/O: ``{train,val,test}.pt`` plus ``meta.json`` under one directory."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archbench.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Meta:
    """What a model and a task need to know about a prepared dataset."""

    name: str
    kind: str  # image | sequence | tabular | audio | text (characters) | tokens (word ids) | parallel
    input_shape: list[int]
    num_classes: int
    class_names: list[str]
    normalization: dict[str, Any]
    splits: dict[str, int]
    seed: int
    val_fraction: float
    source: dict[str, Any]
    checksum: str
    extra: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"  # the learning problem the data poses by default
    target: dict[str, Any] = field(default_factory=dict)  # regression: the targets' mean and std

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def arrays_checksum(arrays: dict[str, dict[str, np.ndarray]]) -> str:
    """sha256 over every split's arrays (dtype, shape and bytes), in a fixed order."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for key in sorted(arrays[split]):
            array = np.ascontiguousarray(arrays[split][key])
            digest.update(f"{split}/{key}/{array.dtype}/{array.shape}".encode())
            digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def write_prepared(
    out_dir: Path, arrays: dict[str, dict[str, np.ndarray]], meta_fields: dict[str, Any],
    files: dict[str, str] | None = None,
) -> Meta:
    """Write the splits, meta.json and any side ``files`` (name → text, e.g. a vocabulary)
    atomically: a half-written directory never replaces a good one."""
    import torch

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    meta = Meta(
        **meta_fields,
        splits={split: int(len(next(iter(arrays[split].values())))) for split in SPLITS},
        checksum=arrays_checksum(arrays),
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700: readable as the user's umask allows
        for split in SPLITS:
            tensors = {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in arrays[split].items()}
            torch.save(tensors, staging / f"{split}.pt")
        for name, text in (files or {}).items():
            (staging / name).write_text(text + "\n", encoding="utf-8")
        (staging / "meta.json").write_text(meta.to_json() + "\n")
    except BaseException:  # a full disk, Ctrl-C: no hidden half-written folder is left behind
        _remove_tree(staging)
        raise
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}-old-{os.getpid()}")
        out_dir.rename(backup)
        staging.rename(out_dir)
        _remove_tree(backup)
    else:
        staging.rename(out_dir)
    return meta


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def load_meta(data_dir: Path) -> Meta:
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise DataError(f"no prepared data at {data_dir}: run `archbench-prepare {Path(data_dir).name}`")
    try:
        return Meta(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise DataError(f"{path} is unreadable ({err}); re-run archbench-prepare") from err


def load_split(data_dir: Path, split: str) -> dict[str, Any]:
    import torch

    path = Path(data_dir) / f"{split}.pt"
    if not path.is_file():
        raise DataError(f"missing {path}: re-run `archbench-prepare {Path(data_dir).name}`")
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{path} is corrupt ({type(err).__name__}); re-run archbench-prepare") from err


def load_all(data_dir: Path, verify: bool = True) -> tuple[Meta, dict[str, dict[str, Any]]]:
    """Meta plus every split; with ``verify`` the tensors must match meta.json's checksum."""
    meta = load_meta(data_dir)
    splits = {split: load_split(data_dir, split) for split in SPLITS}
    if verify:
        actual = arrays_checksum({s: {k: v.numpy() for k, v in t.items()} for s, t in splits.items()})
        if actual != meta.checksum:
            raise DataError(
                f"prepared data in {data_dir} does not match its meta.json checksum "
                f"(expected {meta.checksum[:19]}…, found {actual[:19]}…): re-run "
                f"`archbench-prepare {meta.name}`"
            )
    return meta, splits
