"""A readable Transformer (self-attention) in the nanoGPT style.

Token/patch embedding + positions → N × [multi-head self-attention → residual + LayerNorm →
position-wise feed-forward → residual + LayerNorm] → head. ``causal=True`` masks the future
(language modelling); the encoder pools (mean or a CLS token) for classification.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.common import (
    dropout_layer,
    embed_tokens,
    fill_missing_layers,
    masked_pool,
    require_shape,
    word_embedding,
)

POOLINGS = ("mean", "cls")
TEXT_POOLINGS = ("mean", "max", "cls", "attention")
# none: order-blind, the bag-of-words ablation; alibi: no position vectors, attention scores biased by
# −slope·distance per head (Press et al. 2022, "Train Short, Test Long"), a locality prior
POSITIONS = ("learned", "sinusoidal", "none", "alibi")


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention, optionally causal."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, causal: bool) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.causal, self.dropout = n_heads, causal, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (``TransformerEncoder.attention_mask``): True where a query may attend to a key,
        or a float bias added to the scores (−inf: never); None: all, or the past when causal."""
        n, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(n, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class LayerScale(nn.Module):
    """Multiplies each channel by a learned factor started at ``init`` (Touvron et al. 2021)."""

    def __init__(self, d_model: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((d_model,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


class Block(nn.Module):
    """Attention → residual + LayerNorm → feed-forward → residual + LayerNorm (post-norm, as in
    "Attention Is All You Need"; ``pre_norm=True`` gives the GPT-2 ordering).

    ``layer_scale`` (pre-norm only): each residual branch is multiplied by a learned per-channel
    factor started at this value (LayerScale, Touvron et al. 2021), so a block starts near identity.
    """

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float, causal: bool,
                 pre_norm: bool, layer_scale: float | None = None) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        if layer_scale is not None and not pre_norm:
            raise ConfigError("layer_scale scales pre-norm residual branches: set pre_norm=true")
        self.scale_attn, self.scale_ff = (nn.Identity() if layer_scale is None else LayerScale(d_model, layer_scale)
                                          for _ in range(2))
        self.attn = SelfAttention(d_model, n_heads, dropout, causal)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(),
                                nn.Linear(ff_mult * d_model, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        fill_missing_layers(self, "scale_attn", "scale_ff")  # pickled before layer_scale existed

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.scale_attn(self.drop(self.attn(self.norm1(x), mask)))
            return x + self.scale_ff(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.ff(x))


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return table


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes 2^(−8h/H), h = 1..H: the paper's geometric sequence (exact for H a power of 2)."""
    return torch.pow(2.0, -8.0 * torch.arange(1, n_heads + 1) / n_heads)


def alibi_bias(slopes: torch.Tensor, length: int, causal: bool) -> torch.Tensor:
    """(heads, T, T) score bias −slope·|i − j| (symmetric: the encoder sees both sides); causal
    puts −inf above the diagonal."""
    position = torch.arange(length, device=slopes.device)
    distance = (position[None, :] - position[:, None]).abs().to(slopes.dtype)
    bias = -slopes[:, None, None] * distance
    if causal:
        bias = bias.masked_fill(position[None, :] > position[:, None], float("-inf"))
    return bias


class TransformerEncoder(nn.Module):
    """The shared trunk: embeddings in, contextual vectors out (``causal`` masks the future)."""

    def __init__(self, max_len: int, d_model: int, n_layers: int, n_heads: int, ff_mult: int,
                 dropout: float, causal: bool, positions: str, pre_norm: bool,
                 layer_scale: float | None = None) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ConfigError(f"unknown positions {positions!r}; valid: {', '.join(POSITIONS)}")
        self.max_len, self.causal = max_len, causal
        if positions == "learned":
            self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
            nn.init.normal_(self.pos, std=0.02)
        elif positions == "sinusoidal":
            self.register_buffer("pos", sinusoidal_positions(max_len, d_model).unsqueeze(0), persistent=False)
        else:
            self.pos = None
        self.register_buffer("alibi_slopes", alibi_slopes(n_heads) if positions == "alibi" else None,
                             persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, ff_mult, dropout, causal, pre_norm, layer_scale) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if h.shape[1] > self.max_len:
            raise IncompatibleError(f"sequence of {h.shape[1]} tokens exceeds context {self.max_len}")
        if self.causal and key_mask is not None:
            raise ConfigError("a padding mask is for the bidirectional encoder, not the causal one")
        h = self.drop(h if self.pos is None else h + self.pos[:, : h.shape[1]])
        mask = self.attention_mask(key_mask, h.shape[1], h.dtype)
        for block in self.blocks:
            h = block(h, mask)
        return self.final_norm(h)

    def attention_mask(self, key_mask: torch.Tensor | None, length: int,
                       dtype: torch.dtype) -> torch.Tensor | None:
        """Built once per forward for every layer: the padding mask ``key_mask`` (N, T), True for
        real tokens, as (N, 1, 1, T); with ALiBi the (heads, T, T) bias, −inf at padded keys."""
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if self.alibi_slopes is None:
            return mask
        bias = alibi_bias(self.alibi_slopes, length, self.causal).to(dtype)
        return bias if mask is None else bias.masked_fill(~mask, float("-inf"))


class TransformerClassifier(nn.Module):
    """Patch embedding of a channels-first sequence ``(N, C, L)`` → encoder → pooled → classes."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        patch_size: int = 1,
        pooling: str = "mean",
        positions: str = "learned",
        pre_norm: bool = False,
        patch_stride: int | None = None,
    ) -> None:
        super().__init__()
        require_shape("transformer", input_shape, (2,),
                      "sequences (features, steps); for images use data.layout=rows")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        channels, length = int(input_shape[0]), int(input_shape[1])
        stride = int(patch_stride or patch_size)  # a stride below patch_size overlaps the patches
        if not 1 <= stride <= patch_size <= length or (length - patch_size) % stride:
            raise IncompatibleError(f"patches of {patch_size} steps every {stride} do not tile the sequence "
                                    f"length {length} (need stride ≤ patch_size and (length − patch_size) "
                                    f"divisible by the stride)")
        self.patch_size, self.patch_stride, self.pooling = patch_size, stride, pooling
        tokens = (length - patch_size) // stride + 1 + (1 if pooling == "cls" else 0)
        self.embed = nn.Linear(channels * patch_size, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.encoder = TransformerEncoder(tokens, d_model, n_layers, n_heads, ff_mult, dropout,
                                          causal=False, positions=positions, pre_norm=pre_norm)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, _ = x.shape
        # (N, C, tokens, patch) → (N, tokens, patch·C), step-major as the embedding expects
        patches = x.unfold(2, self.patch_size, self.patch_stride).permute(0, 2, 3, 1)
        h = self.embed(patches.reshape(n, patches.shape[1], -1))
        if self.cls is not None:
            h = torch.cat([self.cls.expand(n, -1, -1), h], dim=1)
        h = self.encoder(h)
        return self.head(h[:, 0] if self.cls is not None else h.mean(dim=1))


class TextTransformer(nn.Module):
    """Sentence classifier: token + position embeddings → encoder with a padding mask → CLS token,
    masked mean, masked max or attention pooling over time → classes. Padded positions are never
    attended to nor pooled. ``attention``: a learned score per token, softmax over the real tokens,
    the weighted sum (SeqPool, Hassani et al. 2021; Lin et al. 2017 with one head).

    ``embed_dropout``: dropout on the word vectors alone (training only), before positions are added
    and before the encoder's own ``dropout``, as the recurrent nets' option of that name.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, vocab_size: int = 0,
                 d_model: int = 128, n_layers: int = 2, n_heads: int = 4, ff_mult: int = 4,
                 dropout: float = 0.1, pooling: str = "mean", positions: str = "learned",
                 pre_norm: bool = True, embed_init_std: float | None = None, head_dropout: float = 0.0,
                 embed_dropout: float = 0.0, layer_scale: float | None = None, **_: object) -> None:
        super().__init__()
        if vocab_size < 2:
            raise IncompatibleError("the text transformer reads word ids: it needs tokenized text data")
        if pooling not in TEXT_POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; valid: {', '.join(TEXT_POOLINGS)}")
        self.pooling = pooling
        self.embed = word_embedding(vocab_size, d_model, embed_init_std)
        self.embed_drop = dropout_layer("model.text_net.embed_dropout", embed_dropout)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.encoder = TransformerEncoder(int(input_shape[0]) + (pooling == "cls"), d_model, n_layers,
                                          n_heads, ff_mult, dropout, causal=False,
                                          positions=positions, pre_norm=pre_norm, layer_scale=layer_scale)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, num_classes))
        self.head_drop = dropout_layer("model.text_net.head_dropout", head_dropout)
        self.register_module("pool_score", nn.Linear(d_model, 1) if pooling == "attention" else None)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        fill_missing_layers(self, "embed_drop", "head_drop")  # pickled before these options existed
        self._modules.setdefault("pool_score", None)  # pickled before attention pooling existed

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(N, T, D)`` encoder states → ``(N, D)`` by the net's pooling, over the real tokens only."""
        if self.cls is not None:
            return h[:, 0]
        if self.pool_score is not None:
            weights = self.pool_score(h).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=1)
            return torch.einsum("nt,ntd->nd", weights, h)
        return masked_pool(h, mask, self.pooling)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Normalised pooled vector → dropout (training only) → classes."""
        norm, linear = self.head
        return linear(self.head_drop(norm(pooled)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, mask = embed_tokens(self.embed, ids)
        h = self.embed_drop(h)  # zeros stay zeros: padding is unaffected
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(h), -1, -1), h], dim=1)
            mask = torch.cat([mask.new_ones(len(h), 1), mask], dim=1)
        return self.classify(self.pool(self.encoder(h, mask), mask))


class CharTransformer(nn.Module):
    """Decoder-only character language model (nanoGPT-style): causal encoder → logits per step.

    Reference CPU size: 4 layers, 4 heads, 128 embedding, context 64.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, d_model: int = 128,
                 n_layers: int = 4, n_heads: int = 4, ff_mult: int = 4, dropout: float = 0.0,
                 positions: str = "learned", pre_norm: bool = True, **_: object) -> None:
        super().__init__()
        self.block_size = int(input_shape[0])
        self.embed = nn.Embedding(num_classes, d_model)
        self.encoder = TransformerEncoder(self.block_size, d_model, n_layers, n_heads, ff_mult,
                                          dropout, causal=True, positions=positions, pre_norm=pre_norm)
        self.head = nn.Linear(d_model, num_classes, bias=False)
        self.head.weight = self.embed.weight  # weight tying, as in GPT-2
        self.apply(_init_gpt)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)))


def _init_gpt(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
