"""VGG (Simonyan & Zisserman 2015) for small images: blocks of 3×3 convs (optionally with batch
norm) and 2×2 max-pools, then a dropout classifier. The layouts are the paper's A/B/D/E columns
(VGG-11/13/16/19); ``width`` scales every conv's maps (0.25: 16 … 128 instead of 64 … 512)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.errors import ConfigError
from archbench.nets.common import flat_size, pool_if_room, require_shape, scaled

# "M": 2×2 max-pool; numbers: a 3×3 conv with that many maps
LAYOUTS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """``layout`` (a name of ``LAYOUTS`` or a list of map counts and "M") → flatten → dropout →
    dense ``hidden`` ReLU → dropout → classes (``hidden: 0``: one linear layer, the CIFAR variant).
    A pool is skipped once the map is 1 pixel wide, so 8×8 and 28×28 images fit too."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, layout: str | Sequence = "vgg11",
                 width: float = 0.25, batch_norm: bool = True, hidden: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        require_shape("vgg", input_shape, (3,), "images (C, H, W)")
        if isinstance(layout, str):
            if layout not in LAYOUTS:
                raise ConfigError(f"unknown model.net.layout {layout!r}; valid: {', '.join(LAYOUTS)} "
                                  f"or a list of map counts and 'M'")
            layout = LAYOUTS[layout]
        layers: list[nn.Module] = []
        in_maps, size = int(input_shape[0]), min(input_shape[1:])
        for entry in layout:
            if entry == "M":
                pool, size = pool_if_room(size, nn.MaxPool2d(2))
                layers.append(pool)
                continue
            maps = scaled(int(entry), width)
            layers.append(nn.Conv2d(in_maps, maps, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(maps))
            layers.append(nn.ReLU())
            in_maps = maps
        self.features = nn.Sequential(*layers)
        flat = flat_size(self.features, input_shape)
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden:
            head += [nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(dropout)]
            flat = hidden
        head.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
