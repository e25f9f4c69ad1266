"""Your own images: one sub-folder of image files (PNG, JPEG, BMP, GIF, TIFF, WebP) per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.images import IMAGE_KINDS, image_files, read_image
from archbench.data.sources import Source, sha256_of
from archbench.data.sources.folders import (
    check_given,
    check_split_classes,
    class_folders,
    other_files,
    split_folders,
)
from archbench.errors import ConfigError, DataError


def _class_folders(root: Path) -> list[Path]:
    folders = class_folders(root)
    if not folders:
        raise DataError(f"no class sub-folders in {root}: put one folder of images per class there")
    return folders


def _read_tree(root: Path, classes: list[str], channels: int, size: tuple[int, int]):
    if not any((root / name).is_dir() for name in classes):
        check_given(root, 0, "image files", classes)
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
    """``root/<class>/*.png`` (seeded validation and test splits are carved later), or
    ``root/train/<class>`` with ``root/test/<class>`` and/or ``root/val/<class>`` (or ``valid/``,
    ``validation/``) when those images are given."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    if not cfg.get("root") or not root.is_dir():
        raise DataError(f"image folder not found: {root.resolve()}; set data.root=DIR with one "
                        f"sub-folder of images per class")
    channels = int(cfg.get("channels", 1))
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    size = cfg.get("image_size", 28)
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    splits = split_folders(root)
    train_root = splits["train"]
    classes = [p.name for p in _class_folders(train_root)]
    if len(classes) < 2:
        raise DataError(f"{train_root} has one class folder only ({classes[0]}): nothing to classify")
    check_split_classes(splits, classes)
    x, y = _read_tree(train_root, classes, channels, size)
    given = {split: _read_tree(splits[split], classes, channels, size) for split in ("val", "test") if split in splits}
    x_val, y_val = given.get("val", (None, None))
    x_test, y_test = given.get("test", (None, None))
    info = {"origin": str(root.resolve()), "images": int(len(y) + sum(len(labels) for _, labels in given.values())),
            "test": f"given ({splits['test'].name}/ sub-tree)" if "test" in splits else "seeded split",
            "validation": f"given ({splits['val'].name}/ sub-tree)" if "val" in splits else "seeded split",
            "checksum": sha256_of(x, y, *(a for pair in given.values() for a in pair))}
    return Source(x, y, x_test, y_test, "image", [channels, *size], classes, info, x_val=x_val, y_val=y_val)
