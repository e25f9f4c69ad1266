"""DeepSpeech-style acoustic model (Amodei et al. 2016, "Deep Speech 2", scaled to spoken digits):
2-D convolutions over the spectrogram → bidirectional GRU layers over time → a per-frame linear
layer over the symbols plus the CTC blank.

Input ``(N, features, frames)``; ``forward(x, lengths)`` gives per-frame logits ``(N, T', classes)``
and ``output_lengths(lengths)`` how many of those frames each input fills. Given lengths, padding
changes nothing: frames past an input's end are zeroed before and after every convolution (as
the zero padding of an unpadded input would be) and never reach the recurrent state (packed
sequences), so a string transcribes the same alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archbench.errors import ConfigError
from archbench.nets.common import require_shape


class DeepSpeech(nn.Module):
    """[conv (freq × time kernel, stride) → BN → clipped ReLU] per conv → BiGRU × layers → linear."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 32),
                 kernels: Sequence[Sequence[int]] = ((11, 11), (5, 5)),
                 strides: Sequence[Sequence[int]] = ((2, 2), (2, 2)), hidden_size: int = 128,
                 num_layers: int = 2, dropout: float = 0.1, clip: float = 20.0) -> None:
        super().__init__()
        require_shape("deepspeech", input_shape, (2,), "spectrogram features (features, frames)")
        if not len(channels) == len(kernels) == len(strides) or not channels:
            raise ConfigError(f"deepspeech needs one kernel and one stride per conv channel entry, got "
                              f"{len(channels)} channels, {len(kernels)} kernels, {len(strides)} strides")
        layers: list[nn.Module] = []  # one conv → BN → clipped ReLU block per entry
        height, in_channels = int(input_shape[0]), 1
        self.time_convs: list[tuple[int, int, int]] = []  # (kernel, stride, padding) along time
        for out_channels, kernel, stride in zip(channels, kernels, strides, strict=True):
            padding = (kernel[0] // 2, kernel[1] // 2)
            layers.append(nn.Sequential(
                nn.Conv2d(in_channels, int(out_channels), tuple(kernel), tuple(stride), padding, bias=False),
                nn.BatchNorm2d(int(out_channels)), nn.Hardtanh(0.0, clip)))
            height = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
            self.time_convs.append((int(kernel[1]), int(stride[1]), padding[1]))
            in_channels = int(out_channels)
        if height < 1:
            raise ConfigError(f"deepspeech's convolutions shrink {input_shape[0]} features to nothing")
        self.convs = nn.ModuleList(layers)
        self.rnn = nn.GRU(in_channels * height, hidden_size, num_layers=num_layers, batch_first=True,
                          bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden_size, num_classes)

    @staticmethod
    def _after(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
        return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for conv in self.time_convs:
            lengths = self._after(lengths, *conv)
        return lengths

    @staticmethod
    def _mask(maps: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:
            return maps
        keep = torch.arange(maps.shape[-1], device=maps.device) < lengths.to(maps.device).unsqueeze(1)
        return maps * keep[:, None, None, :].to(maps.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        maps = self._mask(x.unsqueeze(1), lengths)  # (N, 1, F, T)
        for block, conv in zip(self.convs, self.time_convs, strict=True):
            lengths = None if lengths is None else self._after(lengths, *conv)
            maps = self._mask(block(maps), lengths)  # (N, C, F', T')
        n, c, f, t = maps.shape
        frames = maps.permute(0, 3, 1, 2).reshape(n, t, c * f)
        if lengths is None:
            outputs, _ = self.rnn(frames)
        else:
            kept = lengths.clamp(1, t).cpu()
            packed = pack_padded_sequence(frames, kept, batch_first=True, enforce_sorted=False)
            outputs, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=t)
        return self.head(self.dropout(outputs))
