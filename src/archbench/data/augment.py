"""Training-time augmentation of image, sequence and spectrogram batches, on tensors in memory (on the
training device, no per-sample PIL path). Random draws come from torch's global generator, which
the run seeds (and a resumed run restores), so a run augments the same way every time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from archbench.errors import ConfigError


def random_shift(x: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """Translate each image (N, C, H, W) or sequence (N, C, L) by up to ``max_fraction`` of its size,
    independently per sample, repeating border values (one vectorised ``grid_sample``)."""
    planar = x if x.dim() == 4 else x.unsqueeze(2)
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    # affine_grid coordinates span [-1, 1]: a shift of f·size is 2f
    theta[:, 0, 2] = (torch.rand(n, device=x.device) * 2 - 1) * 2 * max_fraction
    if x.dim() == 4:
        theta[:, 1, 2] = (torch.rand(n, device=x.device) * 2 - 1) * 2 * max_fraction
    grid = F.affine_grid(theta, list(planar.shape), align_corners=False)
    shifted = F.grid_sample(planar, grid, padding_mode="border", align_corners=False)
    return shifted if x.dim() == 4 else shifted.squeeze(2)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad each image (N, C, H, W) by ``padding`` pixels and crop it back to H × W at a random
    offset per sample (the CIFAR recipe of He et al.: padding 4). Zero is the training mean of
    prepared (normalised) data."""
    n, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    rows = dy + torch.arange(height, device=x.device).view(1, -1, 1)
    cols = dx + torch.arange(width, device=x.device).view(1, 1, -1)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left-right with probability ½."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def mask_bands(x: torch.Tensor, max_width: int, count: int, axis: int) -> torch.Tensor:
    """SpecAugment's masks (Park et al. 2019): ``count`` bands of up to ``max_width`` rows
    (``axis=-2``, features) or frames (``axis=-1``) per example set to 0, the training mean."""
    size, n = x.shape[axis], x.shape[0]
    positions = torch.arange(size, device=x.device)
    keep = torch.ones(n, size, dtype=torch.bool, device=x.device)
    for _ in range(count):
        width = torch.randint(0, max_width + 1, (n, 1), device=x.device)
        start = (torch.rand(n, 1, device=x.device) * (size - width + 1)).long()
        keep &= ~((positions >= start) & (positions < start + width))
    shape = [n] + [1] * (x.dim() - 1)
    shape[axis] = size
    return x * keep.view(shape).to(x.dtype)


def noise_in_mel_power(x: torch.Tensor, snr_db: tuple[float, float], mean: torch.Tensor,
                       std: torch.Tensor) -> torch.Tensor:
    """White noise at a random SNR per example, added to normalised log-mel features in the mel
    power domain (the filters have unit area, so white noise adds the same power to every band;
    its expected power, the cross term averaging out)."""
    mean, std = mean.to(x).view(1, -1, 1), std.to(x).view(1, -1, 1)
    power = torch.exp(x * std + mean)
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(x.shape[0], 1, 1, device=x.device)
    noise = power.mean(dim=(1, 2), keepdim=True) / 10 ** (snr / 10)
    return ((torch.log(power + noise) - mean) / std).to(x.dtype)


@dataclass(frozen=True)
class Augmentation:
    """What ``data.augment_shift`` (fraction of the size), ``data.augment_crop`` (padding in pixels)
    and ``data.augment_flip`` ask for; applied to training batches only."""

    shift: float = 0.0
    crop: int = 0
    flip: bool = False
    noise_snr: tuple[float, float] | None = None  # spectrograms: [low, high] dB
    time_mask: int = 0
    freq_mask: int = 0
    masks: int = 2
    log_mel: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) for the noise
    # nothing asked for: each training step returns its batch at once (the checks below cost ~3 µs a step)
    identity: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        asked = (self.shift > 0, self.crop, self.flip, self.noise_snr is not None, self.time_mask, self.freq_mask)
        object.__setattr__(self, "identity", not any(asked))

    @classmethod
    def from_data_config(cls, data_cfg: Any, kind: str, audio: dict[str, Any] | None = None) -> Augmentation:
        """The training augmentation ``data_cfg`` asks for, refused in one line where it has no meaning."""
        snr = data_cfg.get("augment_noise_snr")
        augment = cls(float(data_cfg.get("augment_shift", 0.0) or 0.0),
                      int(data_cfg.get("augment_crop", 0) or 0), bool(data_cfg.get("augment_flip", False)),
                      tuple(float(v) for v in snr) if snr else None, int(data_cfg.get("augment_time_mask", 0) or 0),
                      int(data_cfg.get("augment_freq_mask", 0) or 0), int(data_cfg.get("augment_masks", 2)))
        if min(augment.shift, augment.crop, augment.time_mask, augment.freq_mask, augment.masks) < 0:
            raise ConfigError("data.augment_shift, _crop, _time_mask, _freq_mask and _masks must be ≥ 0")
        if (augment.crop or augment.flip) and kind != "image":
            raise ConfigError(f"data.augment_crop and data.augment_flip need images; this dataset is {kind} "
                              f"(data.augment_shift translates sequences too)")
        if (augment.noise_snr or augment.time_mask or augment.freq_mask) and kind != "audio":
            raise ConfigError(f"data.augment_noise_snr, _time_mask and _freq_mask need audio; this dataset is {kind}")
        if augment.noise_snr is not None:
            if len(augment.noise_snr) != 2 or augment.noise_snr[0] > augment.noise_snr[1]:
                raise ConfigError(f"data.augment_noise_snr must be [low, high] dB, got {list(snr)}")
            if (audio or {}).get("features", {}).get("kind") != "logmel":
                raise ConfigError("data.augment_noise_snr adds noise to log-mel features; these are "
                                  "MFCCs (set data.features.kind=logmel, or drop the noise)")
            return cls(**{**augment.as_dict(), "log_mel": (tuple(audio["mean"]), tuple(audio["std"]))})
        return augment

    def as_dict(self) -> dict[str, Any]:
        return {"shift": self.shift, "crop": self.crop, "flip": self.flip, "noise_snr": self.noise_snr,
                "time_mask": self.time_mask, "freq_mask": self.freq_mask, "masks": self.masks,
                "log_mel": self.log_mel}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity or not x.is_floating_point() or x.dim() not in (3, 4):
            return x
        if self.crop and x.dim() == 4:
            x = random_crop(x, self.crop)
        if self.flip and x.dim() == 4:
            x = random_flip(x)
        if self.noise_snr is not None and self.log_mel is not None:
            x = noise_in_mel_power(x, self.noise_snr, torch.tensor(self.log_mel[0]), torch.tensor(self.log_mel[1]))
        if self.shift > 0:
            x = random_shift(x, self.shift)
        if self.freq_mask:
            x = mask_bands(x, self.freq_mask, self.masks, axis=-2)
        if self.time_mask:
            x = mask_bands(x, self.time_mask, self.masks, axis=-1)
        return x
