"""Audio front-ends: how a net reads ``(features, frames)`` spectrogram inputs (``model.audio_view``).

- ``frames``: the features as they are, a sequence of frames (lstm, gru, transformer, 1-D cnn);
- ``image``: a one-channel ``features × frames`` image (2-D cnn);
- ``pooled``: every feature's mean and standard deviation over time (mlp: the classic pooled-MFCC
  baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.errors import ConfigError

VIEWS = ("frames", "image", "pooled")


class FeatureView(nn.Module):
    """``(N, features, frames)`` → the ``view`` a net reads."""

    def __init__(self, view: str = "frames") -> None:
        super().__init__()
        if view not in VIEWS:
            raise ConfigError(f"unknown model.audio_view {view!r}; valid: {', '.join(VIEWS)}")
        self.view = view

    def shape(self, input_shape: Sequence[int]) -> list[int]:
        features, frames = (int(s) for s in input_shape)
        return {"frames": [features, frames], "image": [1, features, frames], "pooled": [2 * features]}[self.view]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.view == "image":
            return x.unsqueeze(1)
        if self.view == "pooled":
            return torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1)
        return x


class ViewedNet(nn.Module):
    """A net behind its audio front-end: takes spectrogram features whatever the net reads."""

    def __init__(self, view: FeatureView, net: nn.Module) -> None:
        super().__init__()
        self.view, self.net = view, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.view(x))
