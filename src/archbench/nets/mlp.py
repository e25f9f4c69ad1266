"""Feed-forward network: ``FFNN(x) = act(x W1 + b1) W2 + b2``, any depth and width."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from archbench.nets.common import activation, dropout_rate, head_size


class MLP(nn.Module):
    """Flatten → [Linear → (BatchNorm) → activation → (Dropout)] × len(hidden) → Linear.

    ``linear_skip``: add a linear map of the input to the scores (Wide & Deep, Cheng et al. 2016):
    the net is then logistic regression plus a non-linear correction.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (128,),
        activation_name: str = "relu",
        leaky_slope: float = 0.01,
        dropout: float = 0.2,
        batch_norm: bool = False,
        binary_head: bool = False,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        dropout = dropout_rate("model.net.dropout", dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(input_shape)
        for size in hidden:
            layers.append(nn.Linear(width, int(size)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(size)))
            layers.append(activation(activation_name, leaky_slope))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, head_size(num_classes, binary_head)))
        self.layers = nn.Sequential(*layers)
        self.skip = nn.Linear(prod(input_shape), head_size(num_classes, binary_head)) if linear_skip else None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("skip", None)  # pickled before linear_skip existed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.layers(x)
        return scores if self.skip is None else scores + self.skip(x.flatten(1))
