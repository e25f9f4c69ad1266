"""Training-time augmentation of image and sequence batches, on tensors in memory (on the
training device, no per-sample PIL path). Random draws come from torch's global generator, which
the run seeds (and a resumed run restores), so a run augments the same way every time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from archbench.errors import ConfigError


def random_shift(x: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """Translate each image (N, C, H, W) or sequence (N, C, L) by up to ``max_fraction`` of its size,
    independently per sample, repeating border values (one vectorised ``grid_sample``)."""
    planar = x if x.dim() == 4 else x.unsqueeze(2)
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    # affine_grid coordinates span [-1, 1]: a shift of f·size is 2f
    theta[:, 0, 2] = (torch.rand(n, device=x.device) * 2 - 1) * 2 * max_fraction
    if x.dim() == 4:
        theta[:, 1, 2] = (torch.rand(n, device=x.device) * 2 - 1) * 2 * max_fraction
    grid = F.affine_grid(theta, list(planar.shape), align_corners=False)
    shifted = F.grid_sample(planar, grid, padding_mode="border", align_corners=False)
    return shifted if x.dim() == 4 else shifted.squeeze(2)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad each image (N, C, H, W) by ``padding`` pixels and crop it back to H × W at a random
    offset per sample (the CIFAR recipe of He et al.: padding 4). Zero is the training mean of
    prepared (normalised) data."""
    n, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    rows = dy + torch.arange(height, device=x.device).view(1, -1, 1)
    cols = dx + torch.arange(width, device=x.device).view(1, 1, -1)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left-right with probability ½."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


@dataclass(frozen=True)
class Augmentation:
    """What ``data.augment_shift`` (fraction of the size), ``data.augment_crop`` (padding in pixels)
    and ``data.augment_flip`` ask for; applied to training batches only."""

    shift: float = 0.0
    crop: int = 0
    flip: bool = False

    @classmethod
    def from_data_config(cls, data_cfg: Any, kind: str) -> Augmentation:
        augment = cls(float(data_cfg.get("augment_shift", 0.0) or 0.0),
                      int(data_cfg.get("augment_crop", 0) or 0), bool(data_cfg.get("augment_flip", False)))
        if augment.shift < 0 or augment.crop < 0:
            raise ConfigError(f"data.augment_shift and data.augment_crop must be ≥ 0, got "
                              f"{augment.shift} and {augment.crop}")
        if (augment.crop or augment.flip) and kind != "image":
            raise ConfigError(f"data.augment_crop and data.augment_flip need images; this dataset is {kind} "
                              f"(data.augment_shift translates sequences too)")
        return augment

    def as_dict(self) -> dict[str, Any]:
        return {"shift": self.shift, "crop": self.crop, "flip": self.flip}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point() or x.dim() not in (3, 4):
            return x
        if self.crop and x.dim() == 4:
            x = random_crop(x, self.crop)
        if self.flip and x.dim() == 4:
            x = random_flip(x)
        if self.shift > 0:
            x = random_shift(x, self.shift)
        return x
