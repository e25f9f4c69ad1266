"""IDX files (MNIST's format): MNIST and Fashion-MNIST, the four official files or only the t10k pair."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import Source, check_md5, download
from archbench.errors import DataError

MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a complete gzip file (truncated or damaged: {err})") from None
    if len(raw) < 4:
        raise DataError(f"{path} is too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes, its IDX header promises {expected} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_images(cfg: dict[str, Any], dataset: str, files: dict[str, tuple[str, str]],
               class_names: list[str], url: str) -> Source:
    """Images and labels from the four IDX files of MNIST's format in ``cfg['root']``: all four →
    the official train / test split; only the t10k pair → a deterministic train/val/test split of
    those images (``test_fraction``). Checksums: ``cfg['md5']`` when given, else ``files``'."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    if cfg.get("download"):
        for name, _ in files.values():
            download(str(cfg.get("url") or url).rstrip("/") + "/" + name, root / name)
    present = {key: (root / name).is_file() for key, (name, _) in files.items()}
    if not (present["test_images"] and present["test_labels"]):
        needed = ", ".join(files[k][0] for k in ("test_images", "test_labels"))
        optional = ", ".join(files[k][0] for k in ("train_images", "train_labels"))
        raise DataError(
            f"{dataset} files not found in {root.resolve()}: put {needed} there (and optionally "
            f"{optional} for the full training set), or set data.root=DIR, or data.download=true")
    pinned = dict(cfg.get("md5") or {})
    checked = {}
    for key, (name, official) in files.items():
        if present[key]:
            checked[name] = check_md5(root / name, pinned.get(name, official))

    def read(key: str, labels: bool) -> np.ndarray:
        array = _read_idx(root / files[key][0])
        return array.astype(np.int64) if labels else (array / 255.0).astype(np.float32)[:, None]

    x_test, y_test = read("test_images", False), read("test_labels", True)
    if len(x_test) != len(y_test):
        raise DataError(f"{root}: {len(x_test)} test images but {len(y_test)} labels")
    if present["train_images"] and present["train_labels"]:
        x_pool, y_pool = read("train_images", False), read("train_labels", True)
        x_test_out, y_test_out, layout = x_test, y_test, "official train / 10k test"
    else:
        x_pool, y_pool, x_test_out, y_test_out = x_test, y_test, None, None
        layout = "t10k only: deterministic stratified train/val/test split of the 10,000 test images"
    return Source(x_pool, y_pool, x_test_out, y_test_out, "image", [1, *x_pool.shape[2:]],
                  list(class_names), {"origin": str(root.resolve()), "files_md5": checked,
                                      "layout": layout,
                                      "checksum": "md5:" + ",".join(sorted(checked.values()))})


def mnist(cfg: dict[str, Any]) -> Source:
    """The standard MNIST IDX files from ``root`` (see ``idx_images``)."""
    return idx_images(cfg, "MNIST", MNIST_FILES, [str(i) for i in range(10)], MNIST_URL)


def fashion_mnist(cfg: dict[str, Any]) -> Source:
    """Zalando's Fashion-MNIST (Xiao et al. 2017): MNIST's format and sizes, 10 clothing classes."""
    return idx_images(cfg, "Fashion-MNIST", FASHION_MNIST_FILES, FASHION_MNIST_CLASSES, FASHION_MNIST_URL)
