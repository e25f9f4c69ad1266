"""One prepare function per dataset (a registry by name), all writing the same prepared format.

Each source function returns a train pool and a test split; ``prepare`` carves validation out of
the train pool with a fixed seed (stratified), normalises with training statistics only, and writes
``data/prepared/<name>/{train,val,test}.pt`` plus ``meta.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.store import Meta, write_prepared
from archbench.errors import ConfigError, DataError


@dataclass
class Source:
    """A dataset as it comes from its source, before validation split and normalisation."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    kind: str
    input_shape: list[int]
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()


def source_digits(cfg: dict[str, Any]) -> Source:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, pixel values 0–16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return Source(x, y, None, None, "image", [1, 8, 8], [str(c) for c in bunch.target_names],
                  {"origin": "sklearn.datasets.load_digits", "checksum": _sha256(bunch.data, bunch.target)})


def source_breast_cancer(cfg: dict[str, Any]) -> Source:
    """scikit-learn's bundled Wisconsin breast-cancer table (569 rows, 30 features, 2 classes)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    return Source(x, y, None, None, "tabular", [x.shape[1]], [str(c) for c in bunch.target_names],
                  {"origin": "sklearn.datasets.load_breast_cancer",
                   "checksum": _sha256(bunch.data, bunch.target)})


MNIST1D_DEFAULTS: dict[str, Any] = {
    "num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
    "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "seed": 42,
}


def source_mnist1d(cfg: dict[str, Any]) -> Source:
    """MNIST-1D regenerated offline by the ``mnist1d`` package (never its download path)."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    unknown = set(cfg.get("generate", {})) - set(MNIST1D_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown mnist1d generation argument(s) {sorted(unknown)}; "
                          f"valid: {', '.join(sorted(MNIST1D_DEFAULTS))}")
    args = {**MNIST1D_DEFAULTS, **dict(cfg.get("generate", {}))}
    args["padding"] = list(args["padding"])
    data = make_dataset(ObjectView(dict(args)))
    length = int(args["final_seq_length"])
    x = data["x"].astype(np.float32).reshape(-1, 1, length)
    x_test = data["x_test"].astype(np.float32).reshape(-1, 1, length)
    y, y_test = data["y"].astype(np.int64), data["y_test"].astype(np.int64)
    return Source(x, y, x_test, y_test, "sequence", [1, length], [str(i) for i in range(10)],
                  {"origin": "mnist1d.data.make_dataset", "generate": args,
                   "checksum": _sha256(x, y, x_test, y_test)})


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


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _download_mnist(root: Path, url: str, wanted: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for key in wanted:
        filename, _ = MNIST_FILES[key]
        if not (root / filename).exists():
            partial = root / (filename + ".part")
            urllib.request.urlretrieve(url.rstrip("/") + "/" + filename, partial)  # noqa: S310
            partial.rename(root / filename)


def source_mnist(cfg: dict[str, Any]) -> Source:
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
            actual = _md5(root / name)
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


def _read_text(cfg: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    if name == "pydoc_text":
        from pydoc_data.topics import topics

        text = "\n\n".join(topics[key] for key in sorted(topics))
        return text, {"origin": "pydoc_data.topics (Python's own help text)"}
    path = Path(str(cfg.get("path") or "")).expanduser()
    if not path.is_file():
        if cfg.get("download") and cfg.get("url"):
            path.parent.mkdir(parents=True, exist_ok=True)
            urllib.request.urlretrieve(str(cfg["url"]), path)  # noqa: S310
        else:
            raise DataError(f"text file not found: {path.resolve()}; put the corpus there, set "
                            f"data.path=FILE, or data.download=true to fetch {cfg.get('url')}")
    return path.read_text(encoding="utf-8"), {"origin": str(path.resolve())}


def text_source(name: str) -> Callable[[dict[str, Any]], Source]:
    """A character corpus: the vocabulary is every character in it, sorted."""

    def source(cfg: dict[str, Any]) -> Source:
        text, info = _read_text(cfg, name)
        vocab = sorted(set(text))
        lookup = {ch: i for i, ch in enumerate(vocab)}
        ids = np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
        info["checksum"] = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        info["characters"] = len(text)
        return Source(ids, ids, None, None, "text", [int(cfg.get("block_size", 64))], vocab, info)

    return source


def prepare_text(name: str, cfg: dict[str, Any], out_dir: Path, source: Source) -> Meta:
    """Contiguous train/val/test split of the character ids (default 90/5/5)."""
    ids = source.x_pool
    val_fraction = float(cfg.get("val_fraction", 0.05))
    test_fraction = float(cfg.get("test_fraction", 0.05))
    n_train = int(len(ids) * (1 - val_fraction - test_fraction))
    n_val = int(len(ids) * val_fraction)
    arrays = {"train": {"x": ids[:n_train]}, "val": {"x": ids[n_train : n_train + n_val]},
              "test": {"x": ids[n_train + n_val :]}}
    return write_prepared(
        Path(out_dir), arrays,
        {"name": name, "kind": "text", "input_shape": source.input_shape,
         "num_classes": len(source.class_names), "class_names": source.class_names,
         "normalization": {}, "seed": int(cfg.get("seed", 42)), "val_fraction": val_fraction,
         "source": source.info, "extra": {"config": json.loads(json.dumps(cfg))}})


DATASETS: dict[str, Callable[[dict[str, Any]], Source]] = {
    "digits": source_digits,
    "breast_cancer": source_breast_cancer,
    "mnist1d": source_mnist1d,
    "mnist": source_mnist,
    "pydoc_text": text_source("pydoc_text"),
    "tinyshakespeare": text_source("tinyshakespeare"),
}


def register_dataset(name: str, source: Callable[[dict[str, Any]], Source]) -> None:
    """Add a dataset: a function returning a ``Source`` plus a ``conf/data/<name>.yaml``."""
    DATASETS[name] = source


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    keep, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=y)
    return np.sort(keep), np.sort(held)


def _normalization(kind: str, x: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    if kind == "tabular":
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return {"mean": mean.tolist(), "std": std.tolist(), "per": "feature"}, mean, std
    mean, std = float(x.mean()), float(x.std()) or 1.0
    return {"mean": mean, "std": std, "per": "global"}, np.float32(mean), np.float32(std)


def validate_split_fractions(cfg: dict[str, Any]) -> None:
    for key in ("val_fraction", "test_fraction"):
        value = cfg.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or not 0 < float(value) < 1:
            raise ConfigError(f"data.{key} must be a number strictly between 0 and 1, got {value!r}")


def prepare(name: str, cfg: dict[str, Any], out_dir: str | Path) -> Meta:
    """Build ``out_dir`` (``data/prepared/<name>``) from the dataset's source; deterministic for a given config."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}")
    validate_split_fractions(cfg)
    seed = int(cfg.get("seed", 42))
    val_fraction = float(cfg.get("val_fraction", 0.1))
    source = DATASETS[name](cfg)
    if source.kind == "text":
        return prepare_text(name, cfg, Path(out_dir), source)
    x_pool, y_pool = source.x_pool, source.y_pool
    if source.x_test is None:
        keep, held = _stratified_split(y_pool, float(cfg.get("test_fraction", 0.2)), seed)
        x_test, y_test = x_pool[held], y_pool[held]
        x_pool, y_pool = x_pool[keep], y_pool[keep]
    else:
        x_test, y_test = source.x_test, source.y_test
    train_idx, val_idx = _stratified_split(y_pool, val_fraction, seed)
    x_train, y_train = x_pool[train_idx], y_pool[train_idx]
    stats, mean, std = _normalization(source.kind, x_train)
    arrays = {
        "train": {"x": ((x_train - mean) / std).astype(np.float32), "y": y_train},
        "val": {"x": ((x_pool[val_idx] - mean) / std).astype(np.float32), "y": y_pool[val_idx]},
        "test": {"x": ((x_test - mean) / std).astype(np.float32), "y": y_test},
    }
    return write_prepared(
        Path(out_dir),
        arrays,
        {
            "name": name, "kind": source.kind, "input_shape": source.input_shape,
            "num_classes": len(source.class_names), "class_names": source.class_names,
            "normalization": stats, "seed": seed, "val_fraction": val_fraction,
            "source": source.info,
            "extra": {"config": json.loads(json.dumps(cfg))},
        },
    )


PREPARE_KEYS_IGNORED = ("name", "dir", "batch_size", "eval_batch_size", "layout", "verify_checksum",
                        "augment_shift", "block_size", "steps_per_epoch", "sample_every_n_epochs",
                        "sample_length")


def prepare_config(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved data config that changes the prepared tensors."""
    return {k: v for k, v in data_cfg.items() if k not in PREPARE_KEYS_IGNORED}


def ensure_prepared(data_cfg: dict[str, Any]) -> Meta:
    """Metadata for ``data_cfg``'s prepared data; prepares when missing or prepared differently."""
    from archbench.data.store import load_meta

    data_dir = Path(data_cfg["dir"])
    wanted = json.loads(json.dumps(prepare_config(data_cfg)))
    if (data_dir / "meta.json").is_file():
        meta = load_meta(data_dir)
        if meta.extra.get("config") == wanted:
            return meta
    return prepare(data_cfg["name"], wanted, data_dir)
