"""AlexNet (Krizhevsky et al. 2012) for small images: five conv layers with ReLU, max-pools after
the first, second and fifth, and the dropout classifier of two dense layers. The ImageNet net's
11×11 stride-4 first conv would leave a 32×32 image nothing to see: it is a 5×5 stride-1 conv here,
the rest 3×3, and ``width`` scales the maps (1.0: AlexNet's 64-192-384-256-256)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.nets.common import flat_size, pool_if_room, require_shape, scaled

POOL_AFTER = (0, 1, 4)  # conv indices followed by a max-pool, as in AlexNet


class AlexNet(nn.Module):
    """conv 5×5 → pool → conv → pool → conv → conv → conv → pool → dropout → dense → dropout →
    dense → classes."""

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 maps: Sequence[int] = (64, 192, 384, 256, 256), width: float = 0.5,
                 hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        require_shape("alexnet", input_shape, (3,), "images (C, H, W)")
        layers: list[nn.Module] = []
        in_maps, size = int(input_shape[0]), min(input_shape[1:])
        for index, entry in enumerate(maps):
            out = scaled(entry, width)
            kernel = 5 if index == 0 else 3
            layers += [nn.Conv2d(in_maps, out, kernel, padding=kernel // 2), nn.ReLU()]
            if index in POOL_AFTER:
                pool, size = pool_if_room(size, nn.MaxPool2d(2))
                layers.append(pool)
            in_maps = out
        self.features = nn.Sequential(*layers)
        flat = flat_size(self.features, input_shape)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
