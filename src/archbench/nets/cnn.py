"""Convolutional networks: the reference 32-64 conv net (2-D for images, 1-D for sequences) and
LeNet-5."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.common import activation, embed_tokens, flat_size, require_shape, word_embedding

POOLS = ("max", "avg")


def _conv_layers(dims: int):
    if dims == 1:
        return nn.Conv1d, {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}, nn.BatchNorm1d
    return nn.Conv2d, {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}, nn.BatchNorm2d


class ConvNet(nn.Module):
    """[conv k×k "same" → (BN) → act → pool 2] per entry of ``channels`` → flatten → dense → head.

    Defaults are the reference: conv 32@3×3 → ReLU → maxpool → conv 64@3×3 → ReLU → maxpool →
    dense 128 ReLU → classes (421,642 parameters on 28×28×1).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str = "same",
        pool: str = "max",
        pool_size: int = 2,
        hidden: int = 128,
        activation_name: str = "relu",
        leaky_slope: float = 0.01,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        require_shape("cnn", input_shape, (2, 3),
                      "images (C, H, W) or sequences (C, L); use mlp, logistic or perceptron for tables")
        if pool not in POOLS:
            raise ConfigError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
        if any(int(size) < 1 for size in channels):
            raise ConfigError(f"model.net.channels must be ≥ 1 each, got {list(channels)}")
        if padding == "same" and stride != 1:
            raise ConfigError("padding='same' needs stride 1; give an integer padding instead")
        conv, pools, norm = _conv_layers(len(input_shape) - 1)
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for out_channels in channels:
            layers.append(conv(in_channels, int(out_channels), kernel_size, stride=stride, padding=padding))
            if batch_norm:
                layers.append(norm(int(out_channels)))
            layers.append(activation(activation_name, leaky_slope))
            if pool_size > 1:
                layers.append(pools[pool](pool_size))
            in_channels = int(out_channels)
        self.features = nn.Sequential(*layers)
        try:
            flat = flat_size(self.features, input_shape)
        except RuntimeError as err:
            raise IncompatibleError(
                f"cnn with {len(channels)} conv/pool stages shrinks input {tuple(input_shape)} to "
                f"nothing; use fewer channels entries or pool_size=1"
            ) from err
        head: list[nn.Module] = [nn.Flatten()]
        if hidden:
            head += [nn.Linear(flat, hidden), activation(activation_name, leaky_slope)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            flat = hidden
        head.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5: conv 6@5×5 → pool → conv 16@5×5 → pool → 120 → 84 → classes.

    Built for 32×32 images; 28×28 inputs get the classic 2-pixel padding on the first conv, and
    smaller ones (8×8 digits) are bilinearly upsampled to 32×32 first (``upsample_small``; off: refused).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        activation_name: str = "tanh",
        pool: str = "avg",
        leaky_slope: float = 0.01,
        upsample_small: bool = True,
    ) -> None:
        super().__init__()
        require_shape("lenet5", input_shape, (3,), "images (C, H, W)")
        channels, height, width = input_shape
        self.resize = nn.Identity()
        if min(height, width) < 28:
            if not upsample_small:
                raise IncompatibleError(f"lenet5 needs images of at least 28×28; got {height}×{width} "
                                        f"(set model.net.upsample_small=true, or use cnn)")
            self.resize = nn.Upsample(size=(32, 32), mode="bilinear", align_corners=False)
            input_shape, height, width = (channels, 32, 32), 32, 32
        if pool not in POOLS:
            raise ConfigError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
        pad = 2 if min(height, width) < 32 else 0
        pooling = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=pad), activation(activation_name, leaky_slope), pooling(2),
            nn.Conv2d(6, 16, 5), activation(activation_name, leaky_slope), pooling(2),
        )
        flat = flat_size(self.features, input_shape)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120), activation(activation_name, leaky_slope),
            nn.Linear(120, 84), activation(activation_name, leaky_slope),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.resize(x)))


class TextConvNet(nn.Module):
    """Kim (2014) CNN for sentences: word embedding → parallel 1-D convolutions (one per width in
    ``widths``, ``maps`` feature maps each) → ReLU → max over time → dropout → linear.

    Wide convolutions (zero padding ``width − 1`` on both sides) so sentences shorter than a
    filter still get features; windows made of padding only are excluded from the max, and padded
    embeddings are zero, so extra padding never changes the output.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, vocab_size: int = 0,
                 embed_dim: int = 128, widths: Sequence[int] = (3, 4, 5), maps: int = 100,
                 dropout: float = 0.5, activation_name: str = "relu",
                 embed_init_std: float | None = None) -> None:
        super().__init__()
        if vocab_size < 2:
            raise IncompatibleError("the text CNN reads word ids: it needs tokenized text data")
        if not widths or min(widths) < 1:
            raise ConfigError(f"model.text_net.widths must be positive filter widths, got {list(widths)}")
        self.embed = word_embedding(vocab_size, embed_dim, embed_init_std)
        self.widths = [int(w) for w in widths]
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, maps, w, padding=w - 1) for w in self.widths)
        self.act = activation(activation_name)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(maps * len(self.widths), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, mask = embed_tokens(self.embed, ids)
        lengths = mask.sum(dim=1, keepdim=True)  # (N, 1)
        h = h.transpose(1, 2)  # (N, D, T)
        features = []
        for width, conv in zip(self.widths, self.convs, strict=True):
            maps = self.act(conv(h))  # (N, maps, T + width − 1): window t ends at token t
            steps = torch.arange(maps.shape[-1], device=ids.device)
            real = (steps < lengths + width - 1).unsqueeze(1)  # windows touching a real token
            features.append(maps.masked_fill(~real, float("-inf")).amax(dim=-1))
        return self.head(self.drop(torch.cat(features, dim=1)))
