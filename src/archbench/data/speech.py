"""Audio preparers (``Source.preparer`` of the audio sources) and the spoken-strings datamodule.

- ``prepare_recordings`` (task classification): log-mel or MFCC frames of every recording, fitted
  to ``data.frames`` frames (silence-padded at the end, centre-cropped) or, with ``frames: null``,
  silence-padded to the longest; per-feature mean and std from the training split's real frames.
- ``prepare_strings`` (task ctc): the training split keeps its recordings (strings are drawn
  fresh every batch from them only); validation and test get fixed, seeded strings built from
  their own split's recordings. All keep 16-bit samples; features are computed on loading.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from archbench.data.audio import Features, FrontEnd, StringSpec, fit_to_frames, synthesize_string
from archbench.data.datamodule import InMemoryDataModule, keep_batch
from archbench.errors import ConfigError, DataError

PAD_LABEL = -1  # digit slots after a string's end


def _waves(x: np.ndarray) -> list[np.ndarray]:
    return [record[0] for record in x]


def _ids(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"speaker": np.asarray([r[1] for r in x], dtype=np.int64),
            "recording": np.asarray([r[2] for r in x], dtype=np.int64)}


def _statistics(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of ``frames`` (each ``(features, T)``)."""
    stacked = np.concatenate(frames, axis=1)
    std = stacked.std(axis=1)
    return stacked.mean(axis=1).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def _audio_extra(features: Features, mean, std, source, **more: Any) -> dict[str, Any]:
    silence = (features.silence() - mean) / std
    return {"audio": {"features": features.as_dict(), "mean": mean.tolist(), "std": std.tolist(),
                      "silence": silence.tolist(), "speakers": source.info.get("speakers", []), **more},
            "normalization": {"mean": mean.tolist(), "std": std.tolist(), "per": "feature"}}


def prepare_recordings(cfg: dict[str, Any], source, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Features ``(N, features, frames)`` of every split, normalised with training statistics."""
    features = Features.from_config(cfg)
    frames = cfg.get("frames")
    if frames is not None and int(frames) < 1:
        raise ConfigError(f"data.frames must be ≥ 1 (or null: pad to the longest), got {frames}")
    computed, lengths = {}, {}
    for split, (x, _) in splits.items():
        waves = _waves(x)
        lengths[split] = np.asarray([features.frames_for(len(w)) for w in waves], dtype=np.int64)
        if frames is not None:
            lengths[split] = np.minimum(lengths[split], int(frames))
            waves = [fit_to_frames(w, features, int(frames)) for w in waves]
        computed[split] = [features(w, n) for w, n in zip(waves, lengths[split], strict=True)]
    mean, std = _statistics([f[:, :n] for f, n in zip(computed["train"], lengths["train"], strict=True)])
    width = int(frames) if frames is not None else max(len(f[0]) for s in computed.values() for f in s)
    extra = _audio_extra(features, mean, std, source, frames=width)
    silence = np.asarray(extra["audio"]["silence"], dtype=np.float32)
    arrays = {}
    for split, (x, y) in splits.items():
        batch = np.empty((len(y), features.size, width), dtype=np.float32)
        batch[:] = silence[None, :, None]
        for i, f in enumerate(computed[split]):
            batch[i, :, : f.shape[1]] = (f - mean[:, None]) / std[:, None]
        arrays[split] = {"y": np.asarray(y, dtype=np.int64), "x": batch, "lengths": lengths[split], **_ids(x)}
    return arrays, {**extra, "input_shape": [features.size, width]}, {}


def _pcm(waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms as one flat 16-bit array and their offsets (lossless for 16-bit WAV input)."""
    offsets = np.zeros(len(waves) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(w) for w in waves])
    flat = np.concatenate(waves) if waves else np.zeros(0, dtype=np.float32)
    return np.clip(np.round(flat * 32768), -32768, 32767).astype(np.int16), offsets


def unpack_pcm(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    samples = np.asarray(flat, dtype=np.float32) / 32768
    return [samples[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _fixed_strings(waves, labels, ids, spec: StringSpec, count: int, seed: int, rate: int) -> dict[str, np.ndarray]:
    """``count`` seeded strings of one split's recordings: samples, digits and the recordings used."""
    rng = np.random.default_rng(seed)
    strings, digits = [], np.full((count, spec.max_digits), PAD_LABEL, dtype=np.int64)
    parts = np.full((count, spec.max_digits), PAD_LABEL, dtype=np.int64)
    for i in range(count):
        samples, said, used = synthesize_string(waves, labels, spec, rng, rate)
        strings.append(samples)
        digits[i, : len(said)], parts[i, : len(used)] = said, used
    flat, offsets = _pcm(strings)
    return {"y": digits, "y_lengths": (digits != PAD_LABEL).sum(axis=1), "pcm": flat, "offsets": offsets,
            "part_speaker": np.where(parts >= 0, ids["speaker"][parts], PAD_LABEL),
            "part_recording": np.where(parts >= 0, ids["recording"][parts], PAD_LABEL)}


def prepare_strings(cfg: dict[str, Any], source, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Training recordings (strings drawn per batch) and fixed validation/test strings."""
    features = Features.from_config(cfg)
    given = dict(cfg.get("strings") or {})
    spec = StringSpec.from_config(given)
    seed, rate = int(cfg.get("seed", 42)), features.sample_rate
    arrays = {}
    train_x, train_y = splits["train"]
    flat, offsets = _pcm(_waves(train_x))
    arrays["train"] = {"y": np.asarray(train_y, dtype=np.int64), "pcm": flat, "offsets": offsets, **_ids(train_x)}
    for offset, split in enumerate(("val", "test"), start=1):
        x, y = splits[split]
        if len(y) == 0:
            raise DataError(f"the {split} split has no recordings to build strings from")
        arrays[split] = _fixed_strings(_waves(x), y, _ids(x), spec, int(given.get(f"{split}_strings", 500)),
                                       seed + offset, rate)
    waves = unpack_pcm(flat, offsets)
    rng = np.random.default_rng(seed)
    fit = [features(synthesize_string(waves, train_y, spec, rng, rate)[0])
           for _ in range(int(given.get("fit_strings", 300)))]
    mean, std = _statistics(fit)
    extra = _audio_extra(features, mean, std, source, strings={
        "min_digits": spec.min_digits, "max_digits": spec.max_digits, "gap_ms": list(spec.gap_ms),
        "edge_ms": list(spec.edge_ms)})
    return arrays, {**extra, "input_shape": [features.size, 0]}, {}


class TorchDraws:
    """``integers``/``uniform`` from torch's global generator, which the run seeds (and a resumed
    run restores): the training strings of a run are the same every time."""

    @staticmethod
    def integers(low: int, high: int, size: int | None = None):
        draw = torch.randint(int(low), int(high), (1 if size is None else int(size),))
        return int(draw[0]) if size is None else draw.numpy()

    @staticmethod
    def uniform(low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand(()))


def add_noise(samples: np.ndarray, snr_db: float, rng=TorchDraws) -> np.ndarray:
    """White noise at ``snr_db`` dB below the waveform's mean power."""
    power = float(np.mean(samples ** 2)) or 1e-12
    noise = torch.randn(len(samples)).numpy() * np.sqrt(power / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)


def pad_frames(frames: list[torch.Tensor], silence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch ``(N, features, longest)`` padded with the silence features, and the lengths."""
    lengths = torch.tensor([f.shape[1] for f in frames], dtype=torch.long)
    batch = silence.view(1, -1, 1).repeat(len(frames), 1, int(lengths.max()))
    for i, f in enumerate(frames):
        batch[i, :, : f.shape[1]] = f
    return batch, lengths


class SpokenStrings(Dataset):
    """Strings of ``strings`` (fixed, or ``None``: drawn fresh per batch from the recordings)."""

    def __init__(self, front: FrontEnd, waves: list[np.ndarray], labels, spec: StringSpec | None = None,
                 length: int = 0, noise_snr=None, digits: np.ndarray | None = None) -> None:
        self.front, self.spec, self.length, self.noise_snr = front, spec, length, noise_snr
        self.waves, self.labels, self.digits = waves, np.asarray(labels), digits
        self.cached = None if spec is not None else [front(w) for w in waves]

    def __len__(self) -> int:
        return self.length if self.spec is not None else len(self.waves)

    def lengths(self) -> torch.Tensor:
        return torch.tensor([f.shape[1] for f in self.cached], dtype=torch.long)

    def __getitems__(self, indices: list[int]):
        if self.spec is None:
            frames = [self.cached[i] for i in indices]
            said = [self.digits[i][self.digits[i] >= 0].tolist() for i in indices]
        else:
            frames, said = [], []
            for _ in indices:
                samples, digits, _ = synthesize_string(self.waves, self.labels, self.spec, TorchDraws,
                                                       self.front.features.sample_rate)
                if self.noise_snr:
                    samples = add_noise(samples, TorchDraws.uniform(*self.noise_snr))
                frames.append(self.front(samples))
                said.append(digits)
        x, x_lengths = pad_frames(frames, self.front.silence)
        y_lengths = torch.tensor([len(d) for d in said], dtype=torch.long)
        y = torch.zeros(len(said), int(y_lengths.max()), dtype=torch.long)
        for i, d in enumerate(said):
            y[i, : len(d)] = torch.tensor(d, dtype=torch.long)
        return x, x_lengths, y, y_lengths


class SpokenStringsDataModule(InMemoryDataModule):
    """``(features, frame lengths, digits, digit counts)`` batches: ``steps_per_epoch`` batches of
    fresh training strings per epoch; the fixed validation and test strings, length-bucketed."""

    shuffle_train = False  # the strings are already random

    def __init__(self, data_dir, batch_size: int = 32, eval_batch_size: int = 100, steps_per_epoch: int = 100,
                 noise_snr=None, verify_checksum: bool = True, seed: int = 0) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, verify_checksum, seed)
        if steps_per_epoch < 1:
            raise ConfigError(f"data.steps_per_epoch must be ≥ 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        self.noise_snr = tuple(float(v) for v in noise_snr) if noise_snr else None
        if self.noise_snr is not None and len(self.noise_snr) != 2:
            raise ConfigError(f"data.augment_noise_snr must be [low, high] dB, got {list(noise_snr)}")

    def build_splits(self, meta, raw) -> dict[str, Dataset]:
        audio = meta.extra["audio"]
        front, spec = FrontEnd(audio), StringSpec.from_config(audio["strings"])

        def waves(split: str) -> list[np.ndarray]:
            return unpack_pcm(raw[split]["pcm"].numpy(), raw[split]["offsets"].numpy())

        splits = {"train": SpokenStrings(front, waves("train"), raw["train"]["y"].numpy(), spec,
                                         self.steps_per_epoch * self.batch_size, self.noise_snr)}
        for split in ("val", "test"):
            splits[split] = SpokenStrings(front, waves(split), [], digits=raw[split]["y"].numpy())
        return splits

    @property
    def input_shape(self) -> list[int]:
        self.load()
        return [self.splits["val"].front.features.size, 0]  # any number of frames

    def example_batch(self, n: int = 4) -> dict[str, torch.Tensor]:
        x, lengths, y, y_lengths = self.splits["val"].__getitems__(list(range(n)))
        return {"x": x, "lengths": lengths, "y": y, "y_lengths": y_lengths}

    def _loader(self, split: str, train: bool):
        """Evaluation strings in batches of similar length, shortest first (one process; under
        DDP the shards of the base loader)."""
        from torch.utils.data import DataLoader

        if train or self._world()[1] > 1:
            return super()._loader(split, train)
        order = torch.sort(self.splits[split].lengths(), stable=True).indices
        batches = [chunk.tolist() for chunk in order.split(self.eval_batch_size)]
        return DataLoader(self.splits[split], batch_sampler=batches, collate_fn=keep_batch)
