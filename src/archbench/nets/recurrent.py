"""Recurrent networks: simple RNN (tanh), LSTM and GRU, stacked and optionally bidirectional.

Inputs are channels-first sequences ``(N, C, L)`` (MNIST-1D: 1 feature × 40 steps; images in the
``rows`` layout: W features × H steps); the net reads them as ``L`` steps of ``C`` features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.common import (
    dropout_layer,
    embed_tokens,
    fill_missing_layers,
    masked_pool,
    require_shape,
    word_embedding,
)

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "max")


class RecurrentNet(nn.Module):
    """``cell`` layers over the sequence → pooled hidden states → linear head.

    ``pooling='last'`` uses the final state of each direction (forward: last step, backward: first
    step); ``mean``/``max`` pool the top layer's outputs over time.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        cell: str = "gru",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        require_shape(cell, input_shape, (2,),
                      "sequences (features, steps); for images use data.layout=rows")
        if cell not in CELLS:
            raise ConfigError(f"unknown recurrent cell {cell!r}; valid: {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.rnn = CELLS[cell](
            input_size=int(input_shape[0]), hidden_size=hidden_size, num_layers=num_layers,
            batch_first=True, dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, state = self.rnn(x.transpose(1, 2))  # (N, L, C) → (N, L, D·H)
        if self.pooling == "mean":
            pooled = outputs.mean(dim=1)
        elif self.pooling == "max":
            pooled = outputs.amax(dim=1)
        else:
            hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            last = hidden[-2:] if self.bidirectional else hidden[-1:]  # top layer, each direction
            pooled = torch.cat(list(last), dim=-1)
        return self.head(pooled)


class CharRNN(nn.Module):
    """Character language model: embedding → unidirectional ``cell`` layers → logits per step."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, cell: str = "lstm",
                 hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.1,
                 embed_dim: int = 64, bidirectional: bool = False, **_: object) -> None:
        super().__init__()
        if bidirectional:
            raise IncompatibleError("a bidirectional net sees the future: it cannot be a language model")
        if cell not in CELLS:
            raise ConfigError(f"unknown recurrent cell {cell!r}; valid: {', '.join(CELLS)}")
        self.block_size = int(input_shape[0])
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.rnn = CELLS[cell](embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(self.embed(ids))
        return self.head(outputs)


class TextRNN(nn.Module):
    """Sentence classifier: word embedding → ``cell`` layers (optionally bidirectional) over packed
    sequences, so padding never reaches a state → pooling → dropout → linear.

    ``pooling='last'``: the final state of each direction (forward after the last real word,
    backward after the first); ``mean``/``max``: the top layer's outputs over the real words. With
    its defaults ``model=lstm`` is the tutorials' LSTMClassifier (embedding → LSTM → linear).
    ``embed_dropout``: dropout on the word vectors the recurrent layers read (training only).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, vocab_size: int = 0,
                 cell: str = "lstm", embed_dim: int = 128, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
                 pooling: str = "last", embed_init_std: float | None = None,
                 embed_dropout: float = 0.0) -> None:
        super().__init__()
        if vocab_size < 2:
            raise IncompatibleError("a text RNN reads word ids: it needs tokenized text data")
        if cell not in CELLS:
            raise ConfigError(f"unknown recurrent cell {cell!r}; valid: {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.pooling, self.bidirectional = pooling, bidirectional
        self.embed = word_embedding(vocab_size, embed_dim, embed_init_std)
        self.rnn = CELLS[cell](embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.drop = nn.Dropout(dropout)
        self.embed_drop = dropout_layer("model.text_net.embed_dropout", embed_dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        fill_missing_layers(self, "embed_drop")  # pickled before this option existed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, mask = embed_tokens(self.embed, ids)
        h = self.embed_drop(h)  # zeros stay zeros: padding is unaffected
        lengths = mask.sum(dim=1)
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)
        if self.pooling == "last":
            hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            last = hidden[-2:] if self.bidirectional else hidden[-1:]  # top layer, each direction
            pooled = torch.cat(list(last), dim=-1)
        else:
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=mask.shape[1])
            pooled = masked_pool(outputs, mask, self.pooling)
        return self.head(self.drop(pooled))
