"""Image files as archbench's image datasets hold images, for preparing a folder of them and for
classifying new ones with a trained model: (C, H, W) floats in [0, 1], then the training split's
normalisation (and the model's layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources.folders import files_with
from archbench.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # what Pillow reads
IMAGE_KINDS = "PNG, JPEG, BMP, GIF, TIFF or WebP"


def read_image(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """``path`` as a (channels, H, W) float32 array in [0, 1]: grayscale (1) or RGB (3), resized
    bilinearly to ``size`` (H, W) when it differs; one DataError line when Pillow cannot read it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)  # a phone's photo stored sideways, upright as shown
            if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
                image = _on_white(image)
            wide = image.mode.startswith("I")  # 16-bit grayscale: Pillow's convert("L") clips at 255
            image = Image.fromarray(np.asarray(image, dtype=np.float32) / 65535.0) if wide else \
                image.convert("L" if channels == 1 else "RGB")
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.clip(np.asarray(image, dtype=np.float32), 0, 1) if wide else \
                np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"unreadable image {path}: {err}") from err
    if wide and channels == 3:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _on_white(image):
    """A transparent image as a viewer shows it, over white. Converted as it is, its transparent
    pixels keep whatever colour they hold (usually black): a drawing's black strokes on a
    transparent background read as an all-black image."""
    from PIL import Image

    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def image_files(folder: Path) -> list[Path]:
    """The image files (``IMAGE_SUFFIXES``) in ``folder`` and its sub-folders (photos kept by date,
    say; as torchvision's ImageFolder reads a class), sorted by path; hidden ones (a Mac's ``._*``
    copies, ``.thumbnails/``) are not images of the class."""
    return files_with(folder, IMAGE_SUFFIXES)


def image_input(input_shape: list[int], normalization: dict[str, Any], layout: str) -> dict[str, Any]:
    """What a model needs to take image files (logged in its MLmodel metadata): the prepared
    images' shape, the training split's normalisation, and how the net reads them."""
    return {"channels": int(input_shape[0]), "size": [int(s) for s in input_shape[1:]],
            "normalization": normalization, "layout": layout}


def model_inputs(images: np.ndarray, settings: dict[str, Any]):
    """(N, C, H, W) images in [0, 1] → the tensor the model was trained on: normalised as its
    training split was (one mean and std, or one per channel), read row by row for ``layout=rows``."""
    import torch

    from archbench.data.datamodule import as_rows
    from archbench.data.prepare import normalise

    x = torch.from_numpy(normalise(images, settings["normalization"]))
    return as_rows(x) if settings.get("layout") == "rows" else x
