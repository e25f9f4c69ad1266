"""CIFAR-10 (Krizhevsky 2009) in its official python version: ``cifar-10-batches-py/`` with
``data_batch_1..5``, ``test_batch`` and ``batches.meta`` (pickled dicts), from a directory or the
official tarball (downloaded and extracted on request, every file MD5-checked)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import Source, check_md5, download, extract_archive
from archbench.errors import DataError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_FILES = [*CIFAR10_TRAIN, "test_batch", "batches.meta"]


def _batch_dir(root: Path) -> Path:
    """``root`` itself when it holds the batches, else its ``cifar-10-batches-py/``."""
    return root if (root / "test_batch").is_file() else root / CIFAR10_FOLDER


def _extract(cfg: dict[str, Any], root: Path) -> None:
    """Download the tarball (when asked) and extract it when the batches are not there yet."""
    tarball = root / str(cfg.get("tarball") or "cifar-10-python.tar.gz")
    if cfg.get("download"):
        download(str(cfg["url"]), tarball)  # checked below, once
    if tarball.is_file() and not (_batch_dir(root) / "test_batch").is_file():
        check_md5(tarball, cfg.get("tarball_md5"), "(delete it and download again)")
        extract_archive(tarball, root)


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="bytes")  # noqa: S301 - MD5-checked official file
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"{path} is not a CIFAR python batch (truncated or damaged: {err})") from None


def _images(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} has no b'data' / b'labels' entries: not a CIFAR-10 python batch")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: data is {data.shape} for {len(labels)} labels; CIFAR-10 rows "
                        f"are 3,072 bytes (3 × 32 × 32, channel-major), one per label")
    return (data.reshape(-1, 3, 32, 32) / 255.0).astype(np.float32), labels


def cifar10(cfg: dict[str, Any]) -> Source:
    """50,000 training and 10,000 test images of 10 classes, 3 × 32 × 32 in [0, 1]; class names from
    ``batches.meta``. Each file must match ``cfg['md5']`` (the official checksums)."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    _extract(cfg, root)
    folder = _batch_dir(root)
    missing = [name for name in CIFAR10_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 files missing in {folder.resolve()}: {', '.join(missing)}; put the official "
            f"python version's {CIFAR10_FOLDER}/ (or cifar-10-python.tar.gz) in {root.resolve()}, "
            f"or set data.root=DIR, or data.download=true")
    expected = dict(cfg.get("md5") or {})
    files = {}
    for name in CIFAR10_FILES:
        files[name] = check_md5(folder / name, expected.get(name))
    parts = [_images(folder / name) for name in CIFAR10_TRAIN]
    x_test, y_test = _images(folder / "test_batch")
    meta = _unpickle(folder / "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if len(names) != 10:
        raise DataError(f"{folder / 'batches.meta'} lists {len(names)} label names, not CIFAR-10's 10")
    return Source(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                  x_test, y_test, "image", [3, 32, 32], names,
                  {"origin": str(folder.resolve()), "files_md5": files,
                   "layout": "official 50k train / 10k test",
                   "checksum": "md5:" + ",".join(files[n] for n in CIFAR10_FILES)})
