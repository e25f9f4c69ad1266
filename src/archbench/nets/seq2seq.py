"""Encoder-decoder nets for translation: a GRU encoder-decoder (Cho et al. 2014), a bidirectional
GRU with Bahdanau attention (Bahdanau et al. 2015) and a Transformer (Vaswani et al. 2017).

Every net reads right-padded source ids ``(N, S)`` (``<pad>`` = 0) and offers
- ``forward(src, tgt_in, teacher_forcing=1.0)`` → logits ``(N, T, V)``: the decoder reads the gold
  previous tokens ``tgt_in`` (``<sos> w1 … wn``), or — per example and step, with probability
  ``1 - teacher_forcing`` — its own previous arg-max (recurrent nets only);
- ``encode(src)`` → a decoder state, a dict of tensors with the batch first (so a beam search
  can reorder it row-wise), and ``step(state, prev)`` → (next-token logits ``(N, V)``, new state):
  what greedy and beam search (``archbench.nets.decoding``) call. The attention net leaves its
  last attention weights ``(N, S)`` in ``state['attention']``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.common import PAD_ID
from archbench.nets.transformer import sinusoidal_positions

State = dict[str, torch.Tensor]
POSITIONS = ("learned", "sinusoidal")


def _check_vocab(model: str, src_vocab_size: int) -> None:
    if src_vocab_size < 2:
        raise IncompatibleError(f"{model} translates word ids: it needs sentence pairs (e.g. data=multi30k)")


def free_running(net: nn.Module, state: State, tgt_in: torch.Tensor, teacher_forcing: float) -> torch.Tensor:
    """Decode step by step, feeding each example the gold previous token with probability
    ``teacher_forcing`` and its own previous arg-max otherwise (scheduled sampling)."""
    prev, outputs = tgt_in[:, 0], []
    for t in range(tgt_in.shape[1]):
        logits, state = net.step(state, prev)
        outputs.append(logits)
        if t + 1 < tgt_in.shape[1]:
            gold = torch.rand(len(prev), device=prev.device) < teacher_forcing
            prev = torch.where(gold, tgt_in[:, t + 1], logits.detach().argmax(-1))
    return torch.stack(outputs, dim=1)


def _encode_packed(rnn: nn.GRU, embedded: torch.Tensor, src: torch.Tensor):
    """The GRU over each sentence's real tokens only: (outputs ``(N, S, D·H)``, final states)."""
    lengths = (src != PAD_ID).sum(dim=1).clamp(min=1).cpu()
    packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    outputs, final = rnn(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
    return outputs, final


def output_layer(features: int, vocab: int, readout: int, dropout: float) -> nn.Module:
    """Decoder features → target logits: one linear layer (``readout=0``, the tutorials'), or
    first a tanh readout layer of ``readout`` units (Bahdanau et al.'s deep output, there maxout):
    the vocabulary-sized matrix then reads ``readout`` features instead of all of them, which
    makes the largest layer of a word-level decoder several times cheaper."""
    if not readout:
        return nn.Linear(features, vocab)
    return nn.Sequential(nn.Linear(features, readout), nn.Tanh(), nn.Dropout(dropout), nn.Linear(readout, vocab))


class GRUSeq2Seq(nn.Module):
    """The tutorials' encoder-decoder with a context vector: the encoder's final state starts the
    decoder and is fed to it at every step and to the output layer (Cho et al. 2014)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, src_vocab_size: int = 0,
                 embed_dim: int = 256, hidden_size: int = 512, dropout: float = 0.5, readout: int = 0) -> None:
        super().__init__()
        _check_vocab("seq2seq_gru", src_vocab_size)
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(num_classes, embed_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(embed_dim, hidden_size, batch_first=True)
        self.decoder = nn.GRU(embed_dim + hidden_size, hidden_size, batch_first=True)
        self.out = output_layer(embed_dim + 2 * hidden_size, num_classes, readout, dropout)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: torch.Tensor) -> State:
        _, final = _encode_packed(self.encoder, self.drop(self.src_embed(src)), src)
        return {"context": final[0], "hidden": final[0]}

    def _decode(self, state: State, embedded: torch.Tensor) -> tuple[torch.Tensor, State]:
        context = state["context"].unsqueeze(1).expand(-1, embedded.shape[1], -1)
        outputs, hidden = self.decoder(torch.cat([embedded, context], -1), state["hidden"].unsqueeze(0).contiguous())
        return self.out(torch.cat([embedded, outputs, context], -1)), {**state, "hidden": hidden[0]}

    def step(self, state: State, prev: torch.Tensor) -> tuple[torch.Tensor, State]:
        logits, state = self._decode(state, self.drop(self.tgt_embed(prev)).unsqueeze(1))
        return logits[:, 0], state

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0) -> torch.Tensor:
        state = self.encode(src)
        if teacher_forcing >= 1:  # the decoder's inputs are all known: one GRU call over the sequence
            return self._decode(state, self.drop(self.tgt_embed(tgt_in)))[0]
        return free_running(self, state, tgt_in, teacher_forcing)


class AdditiveAttention(nn.Module):
    """Bahdanau attention: ``v · tanh(W q + U k)`` over the source positions, padding masked out."""

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``keys`` are the projected values (``self.key(values)``, computed once per sentence)."""
        energy = torch.tanh(keys + self.query(query).unsqueeze(1))
        weights = self.score(energy).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return torch.bmm(weights.unsqueeze(1), values).squeeze(1), weights


class AttentionSeq2Seq(nn.Module):
    """Bidirectional GRU encoder; a GRU decoder that attends over the encoder's outputs at every
    step (its previous state is the query) and predicts from its state, the context and the input."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, src_vocab_size: int = 0,
                 embed_dim: int = 256, hidden_size: int = 512, attention_size: int = 512,
                 dropout: float = 0.5, readout: int = 0) -> None:
        super().__init__()
        _check_vocab("seq2seq_attention", src_vocab_size)
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(num_classes, embed_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(embed_dim, hidden_size, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)
        self.attention = AdditiveAttention(hidden_size, 2 * hidden_size, attention_size)
        self.cell = nn.GRUCell(embed_dim + 2 * hidden_size, hidden_size)
        self.out = output_layer(3 * hidden_size + embed_dim, num_classes, readout, dropout)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: torch.Tensor) -> State:
        memory, final = _encode_packed(self.encoder, self.drop(self.src_embed(src)), src)
        hidden = torch.tanh(self.bridge(torch.cat([final[0], final[1]], dim=-1)))
        return {"memory": memory, "keys": self.attention.key(memory), "mask": src != PAD_ID, "hidden": hidden}

    def _features(self, state: State, embedded: torch.Tensor) -> tuple[torch.Tensor, State]:
        context, weights = self.attention(state["hidden"], state["keys"], state["memory"], state["mask"])
        hidden = self.cell(torch.cat([embedded, context], -1), state["hidden"])
        return torch.cat([hidden, context, embedded], -1), {**state, "hidden": hidden, "attention": weights}

    def step(self, state: State, prev: torch.Tensor) -> tuple[torch.Tensor, State]:
        features, state = self._features(state, self.drop(self.tgt_embed(prev)))
        return self.out(features), state

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0) -> torch.Tensor:
        state = self.encode(src)
        if teacher_forcing < 1:
            return free_running(self, state, tgt_in, teacher_forcing)
        embedded, features = self.drop(self.tgt_embed(tgt_in)), []
        for t in range(tgt_in.shape[1]):
            step_features, state = self._features(state, embedded[:, t])
            features.append(step_features)
        return self.out(torch.stack(features, dim=1))  # one output projection for all steps


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer: token embeddings ·√d plus positions, ``encoder_layers`` of
    self-attention over the source (padding masked), ``decoder_layers`` of causal self-attention and
    cross-attention to the source, a linear layer to the target vocabulary. ``pre_norm`` places
    layer norm before each sub-layer (stabler for short CPU budgets) with a final norm."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, src_vocab_size: int = 0,
                 d_model: int = 256, n_heads: int = 8, encoder_layers: int = 3, decoder_layers: int = 3,
                 ff_dim: int = 512, dropout: float = 0.1, positions: str = "learned",
                 pre_norm: bool = True, max_positions: int = 0) -> None:
        super().__init__()
        _check_vocab("seq2seq_transformer", src_vocab_size)
        if positions not in POSITIONS:
            raise ConfigError(f"unknown positions {positions!r}; valid: {', '.join(POSITIONS)}")
        if d_model % n_heads:
            raise ConfigError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.d_model, self.max_positions = d_model, max_positions or int(input_shape[0]) + 2
        self.pre_norm = pre_norm
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(num_classes, d_model, padding_idx=PAD_ID)
        for embedding in (self.src_embed, self.tgt_embed):  # N(0, 1/d): unit scale once multiplied by √d
            nn.init.normal_(embedding.weight, std=d_model ** -0.5)
            with torch.no_grad():
                embedding.weight[PAD_ID].zero_()
        if positions == "learned":  # the scale of the scaled token embeddings, so order is visible from the start
            self.positions = nn.Parameter(torch.randn(self.max_positions, d_model))
        else:
            self.register_buffer("positions", sinusoidal_positions(self.max_positions, d_model), persistent=False)
        layer_args = {"d_model": d_model, "nhead": n_heads, "dim_feedforward": ff_dim, "dropout": dropout,
                      "batch_first": True, "norm_first": pre_norm}
        final = (lambda: nn.LayerNorm(d_model)) if pre_norm else (lambda: None)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer_args), encoder_layers,
                                             norm=final(), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer_args), decoder_layers, norm=final())
        self.out = nn.Linear(d_model, num_classes)
        self.drop = nn.Dropout(dropout)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_positions:
            raise ConfigError(f"sequence of {ids.shape[1]} tokens is longer than max_positions={self.max_positions}")
        return self.drop(embedding(ids) * math.sqrt(self.d_model) + self.positions[: ids.shape[1]])

    def encode(self, src: torch.Tensor) -> State:
        padding = src == PAD_ID
        memory = self.encoder(self._embed(self.src_embed, src), src_key_padding_mask=padding)
        state = {"memory": memory, "padding": padding, "prefix": src.new_empty(len(src), 0)}
        if self.pre_norm:  # each decoder layer's normalised inputs at the positions decoded so far
            state.update({f"keys{i}": memory.new_empty(len(src), 0, self.d_model)
                          for i in range(len(self.decoder.layers))})
        return state

    def _decode(self, state: State, tgt_in: torch.Tensor) -> torch.Tensor:
        length = tgt_in.shape[1]  # True above the diagonal: position t never sees t + 1, t + 2, …
        causal = torch.ones(length, length, dtype=torch.bool, device=tgt_in.device).triu(1)
        hidden = self.decoder(self._embed(self.tgt_embed, tgt_in), state["memory"], tgt_mask=causal,
                              tgt_is_causal=True, tgt_key_padding_mask=tgt_in == PAD_ID,
                              memory_key_padding_mask=state["padding"])
        return self.out(hidden)

    def step(self, state: State, prev: torch.Tensor) -> tuple[torch.Tensor, State]:
        """The next position only: pre-norm layers attend over their cached inputs of the earlier
        positions (which a causal decoder never changes), so a step costs O(t), not O(t²); the
        post-norm variant decodes the whole prefix again. Both equal the full decoder (tested)."""
        prefix = torch.cat([state["prefix"], prev.unsqueeze(1)], dim=1)
        if not self.pre_norm:
            return self._decode(state, prefix)[:, -1], {**state, "prefix": prefix}
        position = prefix.shape[1] - 1
        if position >= self.max_positions:
            raise ConfigError(f"decoding past max_positions={self.max_positions}")
        x = self.drop(self.tgt_embed(prev).unsqueeze(1) * math.sqrt(self.d_model) + self.positions[position])
        padded, new = prefix == PAD_ID, {"prefix": prefix}
        for i, layer in enumerate(self.decoder.layers):
            query = layer.norm1(x)
            keys = new[f"keys{i}"] = torch.cat([state[f"keys{i}"], query], dim=1)
            x = x + layer.dropout1(layer.self_attn(query, keys, keys, key_padding_mask=padded, need_weights=False)[0])
            x = x + layer.dropout2(layer.multihead_attn(layer.norm2(x), state["memory"], state["memory"],
                                                        key_padding_mask=state["padding"], need_weights=False)[0])
            x = x + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(x))))))
        return self.out(self.decoder.norm(x))[:, 0], {**state, **new}

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0) -> torch.Tensor:
        if teacher_forcing < 1:
            raise ConfigError("seq2seq_transformer trains with teacher forcing only (model.teacher_forcing=1.0)")
        return self._decode(self.encode(src), tgt_in)
