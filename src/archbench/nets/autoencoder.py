"""Autoencoders and variational autoencoders (Kingma & Welling 2014) on images.

An encoder maps images ``(N, C, H, W)`` to a code of ``latent_dim`` (for a VAE: the mean and the
log-variance of a diagonal Gaussian q(z|x), ``2·latent_dim`` numbers); a decoder maps codes back to
per-pixel logits ``(N, C, H, W)`` (the Bernoulli decoder's log-odds, or the Gaussian decoder's mean
before a sigmoid). Two bodies: ``mlp`` (the PyTorch example's 784-400-20: one hidden layer of 400
each way) and ``conv`` (two strided 4×4 convolutions each way, as in DCGAN; sides multiples of 4).
The losses live in ``tasks/autoencoding.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.common import require_shape

IMAGES = "images (C, H, W): digits or mnist"
ARCHITECTURES = ("mlp", "conv")


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width_in, width_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class Autoencoder(nn.Module):
    """Encoder and decoder of one body (``architecture``); ``variational`` doubles the code for
    q(z|x)'s mean and log-variance."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int = 20, variational: bool = True,
                 architecture: str = "mlp", hidden: Sequence[int] = (400,), base_channels: int = 32,
                 num_classes: int | None = None) -> None:
        super().__init__()
        require_shape("autoencoder", input_shape, (3,), IMAGES)
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown autoencoder architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        if int(latent_dim) < 1:
            raise ConfigError(f"model.latent_dim must be ≥ 1, got {latent_dim}")
        self.image_shape = tuple(int(s) for s in input_shape)
        self.latent_dim, self.variational = int(latent_dim), bool(variational)
        code = self.latent_dim * (2 if self.variational else 1)
        if architecture == "mlp":
            pixels, widths = prod(self.image_shape), [int(h) for h in hidden]
            self.encoder = nn.Sequential(nn.Flatten(), _mlp([pixels, *widths, code]))
            self.decoder = nn.Sequential(_mlp([self.latent_dim, *widths[::-1], pixels]),
                                         nn.Unflatten(1, self.image_shape))
        else:
            self.encoder, self.decoder = _conv_pair(self.image_shape, code, self.latent_dim, int(base_channels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q(z|x)'s mean and log-variance (a VAE), or the code and None (an autoencoder)."""
        code = self.encoder(x)
        if not self.variational:
            return code, None
        mean, log_var = code.chunk(2, dim=-1)
        return mean, log_var.clamp(-30.0, 20.0)  # exp() stays finite in float32

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(N, C, H, W)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction logits from the code's mean (deterministic: what inference wants)."""
        return self.decode(self.encode(x)[0])


def _conv_pair(shape: tuple[int, ...], code: int, latent_dim: int, base: int) -> tuple[nn.Module, nn.Module]:
    channels, height, width = shape
    if height % 4 or width % 4:
        raise IncompatibleError(f"the conv autoencoder downsamples twice by 2: image sides must be "
                                f"multiples of 4, got {height}×{width} (use model.net.architecture=mlp)")
    inner = (2 * base, height // 4, width // 4)
    encoder = nn.Sequential(
        nn.Conv2d(channels, base, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(base, 2 * base, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(prod(inner), code))
    decoder = nn.Sequential(
        nn.Linear(latent_dim, prod(inner)), nn.ReLU(), nn.Unflatten(1, inner),
        nn.ConvTranspose2d(2 * base, base, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(base, channels, 4, stride=2, padding=1))
    return encoder, decoder
