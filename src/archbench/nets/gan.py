"""Generative adversarial networks: the reference MLP generator/discriminator and a DCGAN.

Generators map noise ``(N, noise_dim)`` to images ``(N, C, H, W)`` in [-1, 1] (tanh); discriminators
map images to the probability that they are real. ``logits`` gives the pre-sigmoid score, which the
adversarial task feeds to a numerically stable BCE-with-logits loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from archbench.errors import IncompatibleError
from archbench.nets.common import require_shape

IMAGES = "images (C, H, W): digits or mnist"


class MLPGenerator(nn.Module):
    """Reference generator: z → 256 → 512 → 1024 (Leaky ReLU 0.2 + batch norm) → C·H·W tanh.

    The reference's Keras batch-norm momentum 0.8 keeps 80 % of the running average per step,
    which is PyTorch ``momentum=0.2``.
    """

    def __init__(self, input_shape: Sequence[int], noise_dim: int = 100,
                 hidden: Sequence[int] = (256, 512, 1024), leaky_slope: float = 0.2,
                 bn_momentum: float = 0.2) -> None:
        super().__init__()
        require_shape("gan", input_shape, (3,), IMAGES)
        self.image_shape, self.noise_dim = tuple(int(s) for s in input_shape), int(noise_dim)
        layers: list[nn.Module] = []
        width = self.noise_dim
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.LeakyReLU(leaky_slope),
                       nn.BatchNorm1d(int(size), momentum=bn_momentum)]
            width = int(size)
        layers += [nn.Linear(width, prod(self.image_shape)), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z).unflatten(1, self.image_shape)


class MLPDiscriminator(nn.Module):
    """Reference discriminator: flatten → 512 → 256 (Leaky ReLU 0.2) → 1 sigmoid."""

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (512, 256),
                 leaky_slope: float = 0.2) -> None:
        super().__init__()
        require_shape("gan", input_shape, (3,), IMAGES)
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.LeakyReLU(leaky_slope)]
            width = int(size)
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def _dcgan_image(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(channels, height, width) of an image DCGAN can make: both sides multiples of 4."""
    require_shape("dcgan", input_shape, (3,), IMAGES)
    channels, height, width = (int(s) for s in input_shape)
    if height % 4 or width % 4:
        raise IncompatibleError(f"dcgan upsamples twice by 2: image sides must be multiples of 4, got "
                                f"{height}×{width} (use model=gan)")
    return channels, height, width


class DCGenerator(nn.Module):
    """DCGAN generator: z → dense to (2·base, H/4, W/4) → [transposed conv ×2 + BN + ReLU] → tanh."""

    def __init__(self, input_shape: Sequence[int], noise_dim: int = 100, base_channels: int = 64) -> None:
        super().__init__()
        channels, height, width = _dcgan_image(input_shape)
        self.noise_dim, self.start = int(noise_dim), (2 * base_channels, height // 4, width // 4)
        self.project = nn.Sequential(nn.Linear(self.noise_dim, prod(self.start), bias=False),
                                     nn.BatchNorm1d(prod(self.start)), nn.ReLU())
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * base_channels, base_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(base_channels), nn.ReLU(),
            nn.ConvTranspose2d(base_channels, channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z).unflatten(1, self.start))


class DCDiscriminator(nn.Module):
    """DCGAN discriminator: strided conv (Leaky ReLU) → strided conv + BN (Leaky ReLU) → dense → 1."""

    def __init__(self, input_shape: Sequence[int], base_channels: int = 64, leaky_slope: float = 0.2) -> None:
        super().__init__()
        channels, height, width = _dcgan_image(input_shape)
        self.layers = nn.Sequential(
            nn.Conv2d(channels, base_channels, 4, stride=2, padding=1), nn.LeakyReLU(leaky_slope),
            nn.Conv2d(base_channels, 2 * base_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * base_channels), nn.LeakyReLU(leaky_slope),
            nn.Flatten(), nn.Linear(2 * base_channels * (height // 4) * (width // 4), 1),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
