"""Single neurons: the Rosenblatt perceptron and the sigmoid/softmax neuron (logistic regression)."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from archbench.nets.common import head_size


class Perceptron(nn.Module):
    """``y = step(w·x + b)``; one unit for two classes, one-vs-rest units for more.

    The forward pass returns the raw scores ``w·x + b``; the step is the decision (score > 0, or the
    highest one-vs-rest score) and training uses the perceptron criterion in the task.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(prod(input_shape), head_size(num_classes, binary_head=True))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class Logistic(nn.Module):
    """``y = σ(w·x + b)`` (softmax over classes when there are more than two)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, binary_head: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(prod(input_shape), head_size(num_classes, binary_head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class Linear(nn.Module):
    """``y = W·x + b``: one output per target (regression) or per class (a linear classifier)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(prod(input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
