"""GoogLeNet-style Inception (Szegedy et al. 2015) for small images: a 3×3 stem, stages of
Inception blocks with a 2×2 max-pool between stages, global average pooling, dropout and one
linear layer. A block's four parallel branches — 1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max-pool → 1×1 —
are concatenated; each is given by the paper's six numbers (#1×1, #3×3 reduce, #3×3, #5×5 reduce,
#5×5, pool proj), scaled by ``width``. Every conv is followed by batch norm (as in Inception v2)
and ReLU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.errors import ConfigError
from archbench.nets.common import pool_if_room, require_shape, scaled

# GoogLeNet's (Table 1) inception 3a, 3b | 4a, 4b
STAGES = [[[64, 96, 128, 16, 32, 32], [128, 128, 192, 32, 96, 64]],
          [[192, 96, 208, 16, 48, 64], [160, 112, 224, 24, 64, 64]]]


def conv_bn(in_maps: int, maps: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_maps, maps, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(maps), nn.ReLU())


class InceptionBlock(nn.Module):
    def __init__(self, in_maps: int, sizes: Sequence[int], width: float) -> None:
        super().__init__()
        if len(sizes) != 6:
            raise ConfigError("an inception block is six numbers: #1x1, #3x3 reduce, #3x3, "
                              f"#5x5 reduce, #5x5, pool proj; got {list(sizes)}")
        c1, r3, c3, r5, c5, proj = (scaled(s, width) for s in sizes)
        self.branches = nn.ModuleList([
            conv_bn(in_maps, c1, 1),
            nn.Sequential(conv_bn(in_maps, r3, 1), conv_bn(r3, c3, 3)),
            nn.Sequential(conv_bn(in_maps, r5, 1), conv_bn(r5, c5, 5)),
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn(in_maps, proj, 1)),
        ])
        self.out_maps = c1 + c3 + c5 + proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class Inception(nn.Module):
    """stem conv 3×3 (→ max-pool on images of 16 px or more, ``stem_pool``) → [Inception blocks of a stage → max-pool] per stage → global average pool →
    dropout → classes."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, stem: int = 64,
                 stages: Sequence[Sequence[Sequence[int]]] = STAGES, width: float = 0.25,
                 dropout: float = 0.4, stem_pool: bool = True) -> None:
        super().__init__()
        require_shape("inception", input_shape, (3,), "images (C, H, W)")
        in_maps, size = scaled(stem, width), min(input_shape[1:])
        layers: list[nn.Module] = [conv_bn(int(input_shape[0]), in_maps, 3)]
        if stem_pool and size >= 16:  # GoogLeNet's stem downsamples too: full-size blocks cost 4×
            layers.append(nn.MaxPool2d(2))
            size //= 2
        for index, stage in enumerate(stages):
            if index > 0:
                pool, size = pool_if_room(size, nn.MaxPool2d(2))
                layers.append(pool)
            for sizes in stage:
                block = InceptionBlock(in_maps, sizes, width)
                layers.append(block)
                in_maps = block.out_maps
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(in_maps, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
