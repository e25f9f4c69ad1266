"""Small helpers shared by the nets."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from archbench.errors import ConfigError, IncompatibleError

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")


def dropout_rate(key: str, rate: object) -> float:
    """``rate`` as a float, refusing a non-number or a rate outside [0, 1) in one line that names
    the config key."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ConfigError(f"{key} must be a number in [0, 1), got {rate!r}")
    return float(rate)


def fill_missing_layers(module: nn.Module, *names: str) -> None:
    """For ``__setstate__``: a net pickled before its optional layer ``name`` existed (text classifiers
    are logged pickled) gets that layer as an identity, so the old model predicts as it did."""
    for name in names:
        module._modules.setdefault(name, nn.Identity())


def dropout_layer(key: str, rate: object) -> nn.Dropout:
    """``nn.Dropout`` at a checked ``rate`` (``dropout_rate``)."""
    return nn.Dropout(dropout_rate(key, rate))


def activation(name: str, leaky_slope: float = 0.01) -> nn.Module:
    """An activation by name: sigmoid, tanh, relu, leaky_relu (slope configurable) or gelu."""
    layers = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "gelu": nn.GELU,
    }
    if name == "leaky_relu":
        return nn.LeakyReLU(leaky_slope)
    if name not in layers:
        raise ConfigError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return layers[name]()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def use_channels_last(net: nn.Module) -> bool:
    """Puts ``net``'s 2-D convolution weights (and every other 4-D tensor) in channels-last memory
    when it holds a ``Conv2d`` or ``ConvTranspose2d``; returns whether it did. Values and
    ``state_dict`` keys stay the same; oneDNN and cuDNN then run NHWC kernels (1.03-1.65× faster
    training steps for most conv recipes here, 0.97× for AlexNet on 8×8 digits: bench/memory_format.py)
    and their outputs stay channels-last through ReLU, pooling and batch norm, whatever the input's
    layout."""
    if not any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in net.modules()):
        return False
    net.to(memory_format=torch.channels_last)
    return True


def head_size(num_classes: int, binary_head: bool) -> int:
    """One output for a two-class problem with a sigmoid head, else one per class."""
    return 1 if binary_head and num_classes == 2 else num_classes


def require_shape(model: str, input_shape: Sequence[int], dims: Sequence[int], needs: str) -> None:
    if len(input_shape) not in dims:
        raise IncompatibleError(
            f"{model} needs {needs}; this dataset's input shape is {tuple(input_shape)}"
        )


# the special ids of archbench.data.tokens (nets never import data): <pad> 0, and in translation
# vocabularies <sos> 2 and <eos> 3
PAD_ID, SOS_ID, EOS_ID = 0, 2, 3


def word_embedding(vocab_size: int, dim: int, init_std: float | None = None) -> nn.Embedding:
    """Word embeddings with a zero ``<pad>`` row: PyTorch's N(0, 1) init, or N(0, ``init_std``)
    (small: a word seen a few times starts near zero, not as unit-size noise; cf. Kim 2014's
    U[-0.25, 0.25] for words without a pretrained vector)."""
    embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
    if init_std is not None:
        with torch.no_grad():
            embedding.weight.normal_(0.0, float(init_std))
            embedding.weight[PAD_ID].zero_()
    return embedding


def embed_tokens(embedding: nn.Embedding, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Word embeddings ``(N, T, D)`` and the mask ``(N, T)`` of real tokens, for right-padded ids.

    The batch is cut after its last real token (a batch of short sentences costs what they need,
    whatever ``max_len`` is) and padded positions are exactly zero: the text nets mask them out so
    padding never changes a prediction.
    """
    mask = ids != PAD_ID
    if not (torch.compiler.is_exporting() or torch.jit.is_tracing()):  # a data-dependent width:
        # no exported graph holds one (and a trace would fix it at the example's)
        used = mask.any(dim=0).nonzero()
        width = int(used.max()) + 1 if len(used) else 1
        ids, mask = ids[:, :width], mask[:, :width]
    return embedding(ids) * mask.unsqueeze(-1), mask


def masked_pool(h: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """``(N, T, D)`` → ``(N, D)``: the mean (``how='mean'``) or max (``'max'``) over the real steps of
    ``mask`` ``(N, T)`` only, so padding never reaches the pooled vector."""
    real = mask.unsqueeze(-1)
    if how == "max":
        return h.masked_fill(~real, float("-inf")).amax(dim=1)
    return (h * real).sum(dim=1) / real.sum(dim=1)


def pool_if_room(size: int, pool: nn.Module) -> tuple[nn.Module, int]:
    """``pool`` (2×2, stride 2) and the halved side while the feature map is at least 2 pixels
    wide, else an identity: the nets built for 32×32 images also run on 8×8 ones."""
    return (pool, size // 2) if size >= 2 else (nn.Identity(), size)


def scaled(maps: int, width: float) -> int:
    """A layer's map count times the net's ``width`` multiplier (at least 1)."""
    return max(1, round(int(maps) * float(width)))


def flat_size(features: nn.Module, input_shape: Sequence[int]) -> int:
    """Length of the flattened output of ``features`` for one input of ``input_shape``."""
    was_training = features.training
    with torch.no_grad():  # in eval mode: batch norm cannot train on one 1×1 map
        size = prod(features.eval()(torch.zeros(1, *input_shape)).shape[1:])
    features.train(was_training)
    return size
