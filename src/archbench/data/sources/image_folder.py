"""Your own images: one sub-folder of image files (PNG, JPEG, BMP, GIF, TIFF, WebP) per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.images import IMAGE_KINDS, image_files, read_image
from archbench.data.sources import Source, class_folders, other_files, sha256_of
from archbench.errors import ConfigError, DataError


def _class_folders(root: Path) -> list[Path]:
    folders = class_folders(root)
    if not folders:
        raise DataError(f"no class sub-folders in {root}: put one folder of images per class there")
    return folders


def _read_tree(root: Path, classes: list[str], channels: int, size: tuple[int, int]):
    images, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():  # a class the given test/ sub-tree does not hold
            continue
        files = image_files(folder)
        others = other_files(folder, files)
        if not files:  # a class no example stands for
            raise DataError(f"class folder {folder} holds no image files ({IMAGE_KINDS})"
                            + (f", only {others}: convert them (a phone's .heic photos to JPEG, say)" if others else ""))
        skipped += [f"{others} in {name}"] if others else []
        for path in files:
            images.append(read_image(path, channels, size))
            labels.append(label)
    if skipped:
        print(f"archbench: warning: {root}: skipped files that are not images archbench reads "
              f"({IMAGE_KINDS}): {'; '.join(skipped)}", flush=True)
    return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64)


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
    given_test = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if given_test else root
    classes = [p.name for p in _class_folders(train_root)]
    if len(classes) < 2:
        raise DataError(f"{train_root} has one class folder only ({classes[0]}): nothing to classify")
    x, y = _read_tree(train_root, classes, channels, size)
    x_test = y_test = None
    if given_test:
        x_test, y_test = _read_tree(root / "test", classes, channels, size)
    info = {"origin": str(root.resolve()), "images": int(len(y) + (0 if y_test is None else len(y_test))),
            "test": "given (test/ sub-tree)" if given_test else "seeded split",
            "checksum": sha256_of(x, y, *(a for a in (x_test, y_test) if a is not None))}
    return Source(x, y, x_test, y_test, "image", [channels, *size], classes, info)
