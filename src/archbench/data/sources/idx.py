"""IDX files (MNIST's format): the four official files, or only the t10k pair."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import Source, download, md5_of
from archbench.errors import DataError

MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _download_mnist(root: Path, url: str, wanted: list[str]) -> None:
    for key in wanted:
        filename, _ = MNIST_FILES[key]
        download(url.rstrip("/") + "/" + filename, root / filename)


def mnist(cfg: dict[str, Any]) -> Source:
    """The standard MNIST IDX files from ``root``: all four → 60k/10k; only the t10k pair →
    a deterministic train/test split of those 10,000 images (``test_fraction``)."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    if cfg.get("download"):
        _download_mnist(root, str(cfg.get("url") or MNIST_URL), list(MNIST_FILES))
    present = {key: (root / name).is_file() for key, (name, _) in MNIST_FILES.items()}
    if not (present["test_images"] and present["test_labels"]):
        needed = ", ".join(MNIST_FILES[k][0] for k in ("test_images", "test_labels"))
        optional = ", ".join(MNIST_FILES[k][0] for k in ("train_images", "train_labels"))
        raise DataError(
            f"MNIST files not found in {root.resolve()}: put {needed} there (and optionally "
            f"{optional} for the full 60k training set), or set data.root=DIR, or data.download=true"
        )
    files = {}
    for key, (name, md5) in MNIST_FILES.items():
        if present[key]:
            actual = md5_of(root / name)
            if actual != md5:
                raise DataError(f"{root / name} has MD5 {actual}, not the official {md5}")
            files[name] = actual
    x_test = (_read_idx(root / MNIST_FILES["test_images"][0]) / 255.0).astype(np.float32)[:, None]
    y_test = _read_idx(root / MNIST_FILES["test_labels"][0]).astype(np.int64)
    full = present["train_images"] and present["train_labels"]
    if full:
        x = (_read_idx(root / MNIST_FILES["train_images"][0]) / 255.0).astype(np.float32)[:, None]
        y = _read_idx(root / MNIST_FILES["train_labels"][0]).astype(np.int64)
        x_pool, y_pool, x_test_out, y_test_out = x, y, x_test, y_test
        layout = "official 60k train / 10k test"
    else:
        x_pool, y_pool, x_test_out, y_test_out = x_test, y_test, None, None
        layout = "t10k only: deterministic stratified train/val/test split of the 10,000 test images"
    return Source(x_pool, y_pool, x_test_out, y_test_out, "image", [1, 28, 28],
                  [str(i) for i in range(10)],
                  {"origin": str(root.resolve()), "files_md5": files, "layout": layout,
                   "checksum": "md5:" + ",".join(sorted(files.values()))})
