"""The CIFAR ResNets of He et al. (2016, section 4.2): a 3×3 conv of 16 maps, three stages of ``n``
basic blocks (16, 32, 64 maps; stride 2 at the start of stages 2 and 3), global average pooling and
one linear layer — 6n + 2 weighted layers: n = 3, 5, 9 → ResNet-20, 32, 56."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError
from archbench.nets.common import require_shape

SHORTCUTS = ("A", "B")


class BasicBlock(nn.Module):
    """conv 3×3 → BN → ReLU → conv 3×3 → BN, plus the shortcut, → ReLU.

    Where the shape changes, shortcut ``A`` subsamples and zero-pads the new channels
    (parameter-free, the paper's CIFAR choice); ``B`` projects with a 1×1 conv and BN.
    """

    def __init__(self, in_maps: int, maps: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_maps, maps, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(maps)
        self.conv2 = nn.Conv2d(maps, maps, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(maps)
        self.stride, self.extra_maps = stride, maps - in_maps
        self.project = None
        if shortcut == "B" and (stride != 1 or in_maps != maps):
            self.project = nn.Sequential(nn.Conv2d(in_maps, maps, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(maps))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            return self.project(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_maps:
            half = self.extra_maps // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_maps - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: ``depth`` 20, 32, 44, 56, 110 … (or ``n`` directly)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20,
                 maps: Sequence[int] = (16, 32, 64), shortcut: str = "A") -> None:
        super().__init__()
        require_shape("resnet", input_shape, (3,), "images (C, H, W)")
        if (depth - 2) % 6 or depth < 8:
            raise ConfigError(f"model.net.depth must be 6n+2 (20, 32, 44, 56, 110, …), got {depth}")
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"unknown model.net.shortcut {shortcut!r}; valid: {', '.join(SHORTCUTS)}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], maps[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(maps[0]), nn.ReLU())
        layers: list[nn.Module] = []
        in_maps = maps[0]
        for stage, stage_maps in enumerate(maps):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(in_maps, int(stage_maps), stride, shortcut))
                in_maps = int(stage_maps)
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_maps, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
