"""Your own images: one sub-folder of PNG/JPEG files per class (Pillow reads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import Source, sha256_of
from archbench.errors import ConfigError, DataError

SUFFIXES = (".png", ".jpg", ".jpeg")


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"no class sub-folders in {root}: put one folder of images per class there")
    return folders


def _load(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"unreadable image {path}: {err}") from err


def _read_tree(root: Path, classes: list[str], mode: str, size: tuple[int, int]):
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES) if folder.is_dir() else []
        for path in files:
            images.append(_load(path, mode, size))
            labels.append(label)
    if not images:
        raise DataError(f"no PNG/JPEG images under {root}")
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, C, H, W)
    return x.astype(np.float32), np.asarray(labels, dtype=np.int64)


def image_folder(cfg: dict[str, Any]) -> Source:
    """``root/<class>/*.png`` (a seeded test split is carved later), or ``root/train/<class>`` and
    ``root/test/<class>`` when the test images are given."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    if not cfg.get("root") or not root.is_dir():
        raise DataError(f"image folder not found: {root.resolve()}; set data.root=DIR with one "
                        f"sub-folder of images per class")
    channels = int(cfg.get("channels", 1))
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    size = cfg.get("image_size", 28)
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mode = "L" if channels == 1 else "RGB"
    given_test = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if given_test else root
    classes = [p.name for p in _class_folders(train_root)]
    if len(classes) < 2:
        raise DataError(f"{train_root} has one class folder only ({classes[0]}): nothing to classify")
    x, y = _read_tree(train_root, classes, mode, size)
    x_test = y_test = None
    if given_test:
        x_test, y_test = _read_tree(root / "test", classes, mode, size)
    info = {"origin": str(root.resolve()), "images": int(len(y) + (0 if y_test is None else len(y_test))),
            "test": "given (test/ sub-tree)" if given_test else "seeded split",
            "checksum": sha256_of(x, y, *(a for a in (x_test, y_test) if a is not None))}
    return Source(x, y, x_test, y_test, "image", [channels, *size], classes, info)
