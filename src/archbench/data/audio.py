"""Audio: WAV reading, log-mel / MFCC features with torch's own signal functions, and spoken digit
strings made from real recordings.

torchaudio does not pair with this torch build and librosa pulls numba, so the mel filter bank
(HTK mel scale, triangles normalised to unit area) is the dozen lines below; the STFT is
``torch.stft`` and the MFCC's DCT-II is scipy's.
"""

from __future__ import annotations

import functools
import io
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archbench.errors import ConfigError, DataError

FEATURE_KINDS = ("logmel", "mfcc")
LOG_FLOOR = 1e-6  # added to mel power before the log: digital silence maps to log(1e-6)


def read_wav(path: str | Path, sample_rate: int, resample: bool = True, data: bytes | None = None) -> np.ndarray:
    """A WAV file (8-, 16-, 24- or 32-bit PCM, or 32/64-bit float) as mono float32 in [-1, 1] at
    ``sample_rate`` Hz: stereo is averaged to mono, another rate is resampled (polyphase, scipy)
    unless ``resample`` is false; anything else is refused in one line. With ``data`` (the file's
    bytes, say from a request) those are read, and ``path`` only names them in messages."""
    path = Path(path)
    samples, channels, rate = _decode_wav(path, data)
    if len(samples) == 0:
        raise DataError(f"{path}: no audio samples")
    samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != sample_rate:
        if not resample:
            raise DataError(f"{path}: {rate} Hz, not {sample_rate} Hz (set data.resample=true to resample it)")
        from math import gcd

        from scipy.signal import resample_poly

        divisor = gcd(rate, sample_rate)
        samples = resample_poly(samples, sample_rate // divisor, rate // divisor).astype(np.float32)
    return samples.astype(np.float32)


def _decode_wav(path: Path, data: bytes | None = None) -> tuple[np.ndarray, int, int]:
    """(interleaved float32 samples in [-1, 1], channels, rate). Python's ``wave`` reads integer
    PCM; float files and WAVE_FORMAT_EXTENSIBLE ones (how many recorders write 24-bit audio),
    which it calls an unknown format, are read by scipy."""
    try:
        with wave.open(str(path) if data is None else io.BytesIO(data), "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except wave.Error as err:
        if str(err).startswith("unknown format"):
            return _decode_with_scipy(path, data)
        raise DataError(f"{path}: not a PCM WAV file ({err})") from None
    except EOFError:  # it carries no message
        raise DataError(f"{path}: not a PCM WAV file (the file ends before its header does)") from None
    except OSError as err:
        raise DataError(f"{path}: unreadable ({err.strerror or err})") from None
    return _pcm_samples(raw, width, path), channels, rate


def _pcm_samples(raw: bytes, width: int, path: Path) -> np.ndarray:
    """Integer PCM bytes as floats in [-1, 1): 8-bit is unsigned, wider is signed little-endian."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) / 128
    if width == 3:  # no 24-bit dtype: three bytes, sign-extended from the top one
        triples = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        return (np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)).astype(np.float32)
    if width not in (2, 4):
        raise DataError(f"{path}: {8 * width}-bit samples; archbench reads 8-, 16-, 24- and 32-bit PCM WAV")
    dtype = np.int16 if width == 2 else np.int32
    return np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)


def _decode_with_scipy(path: Path, data: bytes | None = None) -> tuple[np.ndarray, int, int]:
    import warnings

    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():  # chunks it skips (LIST, cue): not the user's concern
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, values = wavfile.read(path if data is None else io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - whatever scipy raises, the file is at fault
        # scipy's own refusals are ValueErrors; a cut-off file trips its parser in other ways
        reason = " ".join(str(err).split()) if isinstance(err, ValueError) else "truncated or malformed"
        raise DataError(f"{path}: not a WAV file archbench can read ({reason})") from None
    channels = 1 if values.ndim == 1 else values.shape[1]
    if values.dtype.kind == "f":
        samples = values.astype(np.float32)
    elif values.dtype == np.uint8:
        samples = (values.astype(np.float32) - 128) / 128
    else:  # scipy returns 24-bit audio in int32, left-aligned
        samples = values.astype(np.float32) / float(np.iinfo(values.dtype).max + 1)
    return samples.reshape(-1), channels, int(rate)


def write_wav(path: str | Path | io.BytesIO, samples: np.ndarray, sample_rate: int) -> Path | io.BytesIO:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file (the FSDD format), or into a buffer."""
    path = path if isinstance(path, io.BytesIO) else Path(path)
    pcm = np.clip(np.round(np.asarray(samples) * 32768), -32768, 32767).astype("<i2")
    with wave.open(path if isinstance(path, io.BytesIO) else str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())
    return path


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters equally spaced on the HTK mel scale, each
    summing to one (white noise gives every band the same power). Built once per setting (every
    recording and every training string asks); read-only."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / np.maximum(centre - low, 1e-9)
    falling = (high - bins) / np.maximum(high - centre, 1e-9)
    filters = np.clip(np.minimum(rising, falling), 0.0, None)
    filters = (filters / np.maximum(filters.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)
    filters.flags.writeable = False
    return filters


@dataclass(frozen=True)
class Features:
    """Log-mel spectrogram or MFCC frames, ``(features, frames)`` per waveform; one frame per
    ``hop`` samples (``torch.stft`` with ``center=True``: ``1 + samples // hop`` frames)."""

    kind: str = "logmel"
    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int = 200
    hop: int = 80
    n_mels: int = 40
    n_mfcc: int = 13
    fmin: float = 0.0
    fmax: float | None = None
    utterance_mean: bool = False  # remove each recording's own per-feature mean (CMN)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Features:
        given = dict(cfg.get("features") or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"unknown data.features key(s) {unknown}; valid: {', '.join(sorted(known))}")
        features = cls(**{**given, "sample_rate": int(cfg.get("sample_rate", 8000))})
        if features.kind not in FEATURE_KINDS:
            raise ConfigError(f"unknown data.features.kind {features.kind!r}; valid: {', '.join(FEATURE_KINDS)}")
        if not 0 < features.win_length <= features.n_fft or features.hop < 1:
            raise ConfigError(f"data.features needs 0 < win_length ≤ n_fft and hop ≥ 1, got "
                              f"{features.win_length}, {features.n_fft}, {features.hop}")
        if features.kind == "mfcc" and not 0 < features.n_mfcc <= features.n_mels:
            raise ConfigError(f"data.features.n_mfcc must be in 1..n_mels ({features.n_mels}), got {features.n_mfcc}")
        return features

    @property
    def size(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def frames_for(self, samples: int) -> int:
        return 1 + samples // self.hop

    def samples_for(self, frames: int) -> int:
        """The waveform length that gives exactly ``frames`` frames."""
        return (frames - 1) * self.hop

    def log_mel_power(self, power):
        """Log-mel from an STFT power spectrogram ``(..., n_fft // 2 + 1, frames)`` (a torch tensor)."""
        import torch

        filters = torch.tensor(mel_filterbank(self.n_mels, self.n_fft, self.sample_rate, self.fmin,  # a copy: the
                                              self.fmax or self.sample_rate / 2)).to(power)  # cache is read-only
        return torch.log(torch.einsum("mf,...ft->...mt", filters, power) + LOG_FLOOR)

    def __call__(self, samples: np.ndarray, real: int | None = None) -> np.ndarray:
        """``(features, frames)`` float32 of one waveform; with ``utterance_mean`` each feature's
        mean over its first ``real`` frames (all by default; the rest is padding) is removed:
        cepstral mean normalisation, which takes out a recording's channel and much of its speaker."""
        frames = self._frames(samples)
        if self.utterance_mean:
            frames = frames - frames[:, : real or frames.shape[1]].mean(axis=1, keepdims=True)
        return frames

    def _frames(self, samples: np.ndarray) -> np.ndarray:
        """The frames of ``samples``; a waveform shorter than half a window (a few milliseconds) is
        followed by silence up to it, since ``torch.stft``'s reflection padding needs that much."""
        import torch

        short_by = self.n_fft // 2 + 1 - len(samples)
        wave_ = torch.from_numpy(np.ascontiguousarray(np.pad(samples, (0, max(short_by, 0))), dtype=np.float32))
        spectrum = torch.stft(wave_, self.n_fft, self.hop, self.win_length,
                              window=torch.hann_window(self.win_length), center=True, return_complex=True)
        log_mel = self.log_mel_power(spectrum.abs() ** 2).numpy()
        if self.kind == "mfcc":
            from scipy.fft import dct

            return dct(log_mel, type=2, norm="ortho", axis=0)[: self.n_mfcc].astype(np.float32)
        return log_mel.astype(np.float32)

    def silence(self) -> np.ndarray:
        """The features of digital silence, ``(features,)``: what padding frames hold."""
        return self._frames(np.zeros(self.n_fft, dtype=np.float32))[:, 0]


class FrontEnd:
    """Waveform → normalised frames ``(features, frames)`` (a torch tensor), as a prepared dataset's
    ``meta.extra["audio"]`` records them (feature settings, training mean and std, and the silence
    frame that pads a batch): what training strings and every logged audio model compute."""

    def __init__(self, audio: dict[str, Any]) -> None:
        import torch

        self.features = Features(**audio["features"])
        self.mean = torch.tensor(audio["mean"], dtype=torch.float32).view(-1, 1)
        self.std = torch.tensor(audio["std"], dtype=torch.float32).view(-1, 1)
        self.silence = torch.tensor(audio["silence"], dtype=torch.float32) if "silence" in audio else None

    def __call__(self, samples: np.ndarray, real: int | None = None):
        import torch

        return (torch.from_numpy(self.features(samples, real)) - self.mean) / self.std


def fit_to_frames(samples: np.ndarray, features: Features, frames: int) -> np.ndarray:
    """The waveform padded with silence at the end, or cropped around its centre, to give exactly
    ``frames`` frames."""
    wanted = features.samples_for(frames)
    if len(samples) >= wanted:
        start = (len(samples) - wanted) // 2
        return samples[start : start + wanted]
    return np.pad(samples, (0, wanted - len(samples)))


@dataclass(frozen=True)
class StringSpec:
    """Spoken digit strings: ``min_digits``-``max_digits`` recordings in a row, each followed by a
    random silence of ``gap_ms`` (low, high) milliseconds, with ``edge_ms`` silence at both ends."""

    min_digits: int = 1
    max_digits: int = 7
    gap_ms: tuple[float, float] = (30.0, 200.0)
    edge_ms: tuple[float, float] = (0.0, 100.0)

    @classmethod
    def from_config(cls, given: dict[str, Any]) -> StringSpec:
        keys = ("min_digits", "max_digits", "gap_ms", "edge_ms")
        spec = cls(**{k: tuple(given[k]) if k.endswith("_ms") else int(given[k]) for k in keys if k in given})
        if not 1 <= spec.min_digits <= spec.max_digits:
            raise ConfigError(f"data.strings needs 1 ≤ min_digits ≤ max_digits, got {spec.min_digits}, {spec.max_digits}")
        for name in ("gap_ms", "edge_ms"):
            low, high = getattr(spec, name)
            if not 0 <= low <= high:
                raise ConfigError(f"data.strings.{name} must be [low, high] with 0 ≤ low ≤ high, got {[low, high]}")
        return spec


def synthesize_string(waves: list[np.ndarray], labels: np.ndarray, spec: StringSpec, rng,
                      sample_rate: int) -> tuple[np.ndarray, list[int], list[int]]:
    """One spoken string: (samples, digits, indices of the recordings used), drawn with ``rng``
    (a numpy Generator or anything with ``integers`` and ``uniform``) from ``waves`` only."""
    count = int(rng.integers(spec.min_digits, spec.max_digits + 1))
    chosen = [int(i) for i in rng.integers(0, len(waves), count)]

    def silence(bounds: tuple[float, float]) -> np.ndarray:
        return np.zeros(int(rng.uniform(*bounds) * sample_rate / 1000), dtype=np.float32)

    pieces = [silence(spec.edge_ms)]
    for position, index in enumerate(chosen):
        pieces.append(waves[index])
        pieces.append(silence(spec.gap_ms if position < count - 1 else spec.edge_ms))
    return np.concatenate(pieces), [int(labels[i]) for i in chosen], chosen
