"""Bag of embeddings (fastText-style): the mean of a text's word embeddings → linear.

The baseline of text classification: word order is ignored, padding is excluded from the mean
(``nn.EmbeddingBag`` with ``padding_idx``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.common import PAD_ID

MODES = ("mean", "sum", "max")


class BagOfEmbeddings(nn.Module):
    """Right-padded word ids ``(N, T)`` → pooled embedding → dropout → (hidden ReLU layer) → classes."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, vocab_size: int = 0,
                 embed_dim: int = 64, mode: str = "mean", hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if vocab_size < 2:
            raise IncompatibleError("boe reads word ids: it needs tokenized text data (e.g. data=sst2)")
        if mode not in MODES:
            raise ConfigError(f"unknown boe mode {mode!r}; valid: {', '.join(MODES)}")
        self.bag = nn.EmbeddingBag(vocab_size, embed_dim, mode=mode, padding_idx=PAD_ID)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
        self.head = nn.Sequential(*layers, nn.Linear(hidden or embed_dim, num_classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.bag(ids))
