"""Speech: WAV reading, log-mel/MFCC features, FSDD's two splits, spoken-string synthesis, CTC
decoding and error rates, the audio forms of the classifiers, and the transcribe CLI — on small
WAV files generated in FSDD's exact format (8 kHz mono 16-bit, ``{digit}_{speaker}_{index}.wav``)
and, for the CLI, on a real FSDD recording."""

import math
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, call_cli

from archbench.config import compose, to_dict
from archbench.data.audio import Features, StringSpec, read_wav, synthesize_string, write_wav
from archbench.data.augment import Augmentation, mask_bands, noise_in_mel_power
from archbench.data.prepare import prepare
from archbench.data.sources.audio import recordings_listing
from archbench.data.speech import unpack_pcm
from archbench.data.store import load_all
from archbench.errors import ConfigError, DataError
from archbench.nets.audio import FeatureView
from archbench.nets.decoding import ctc_greedy, ctc_prefix_beam
from archbench.nets.deepspeech import DeepSpeech
from archbench.tasks.ctc import digit_error_rate

REAL_FSDD = REPO.parent / "shared" / "datasets" / "fsdd" / "recordings"
RATE = 8000
SPEAKERS = ("george", "jackson", "lucas")


def tone(digit: int, speaker: int, index: int) -> np.ndarray:
    """A stand-in recording: a decaying chord whose pitch says the digit, 0.15-0.4 s long."""
    rng = np.random.default_rng(1000 * digit + 100 * speaker + index)
    t = np.arange(int(RATE * rng.uniform(0.15, 0.4))) / RATE
    pitch = 200 + 150 * digit + 20 * speaker
    samples = np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * 2.7 * pitch * t)
    return (0.3 * samples * np.exp(-3 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def make_fsdd(folder: Path, indices: int = 10) -> Path:
    """``folder/recordings/{digit}_{speaker}_{index}.wav`` for 3 speakers × 10 digits × ``indices``."""
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    for digit in range(10):
        for s, speaker in enumerate(SPEAKERS):
            for index in range(indices):
                write_wav(recordings / f"{digit}_{speaker}_{index}.wav", tone(digit, s, index), RATE)
    return folder


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory) -> Path:
    return make_fsdd(tmp_path_factory.mktemp("fsdd"))


def data_config(name: str, root: Path, *overrides: str) -> dict:
    return to_dict(compose([f"data={name}", f"data.root={root}", "data.md5=null", *overrides]).data)


def write_pcm(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


# --- WAV reading ------------------------------------------------------------------------------
def test_reads_8khz_mono_16bit_exactly(tmp_path):
    pcm = np.array([0, 16384, -32768, 32767, -1], dtype="<i2")
    samples = read_wav(write_pcm(tmp_path / "a.wav", pcm, RATE), RATE)
    assert samples.dtype == np.float32 and np.array_equal(samples, pcm / 32768)


def test_24_bit_and_float_recordings_read_as_the_same_signal(tmp_path):
    """Before, 24-bit PCM was refused ("archbench reads 8-, 16- and 32-bit") and a float WAV
    (Audacity's and librosa's export) was "not a PCM WAV file (unknown format: 3)"."""
    from scipy.io import wavfile

    signal = np.sin(np.arange(800) / 7) * 0.6
    values = np.round(signal * (2**23 - 1)).astype(np.int32)
    triples = np.stack([values & 255, (values >> 8) & 255, (values >> 16) & 255], axis=1).astype(np.uint8)
    deep = read_wav(write_pcm(tmp_path / "24.wav", triples, RATE, width=3), RATE)
    assert deep.dtype == np.float32 and np.abs(deep - signal).max() < 2**-22
    assert np.array_equal(deep, (values / 2**23).astype(np.float32))  # negative samples sign-extended
    wavfile.write(tmp_path / "float.wav", RATE, np.stack([signal, signal], axis=1).astype(np.float32))
    floats = read_wav(tmp_path / "float.wav", RATE)  # stereo float: averaged like PCM
    assert np.abs(floats - signal).max() < 1e-7
    import struct

    float_header = struct.pack("<4sI4s4sIHHIIHH", b"RIFF", 28, b"WAVE", b"fmt ", 16, 3, 1, RATE, 4 * RATE, 4, 32)
    (tmp_path / "bad.wav").write_bytes(float_header + b"junk")  # a float header, no data chunk
    with pytest.raises(DataError, match=r"bad.wav: not a WAV file archbench can read \(truncated or malformed\)$") as err:
        read_wav(tmp_path / "bad.wav", RATE)
    assert "\n" not in str(err.value)


def test_stereo_is_averaged_and_44k1_is_resampled_or_refused(tmp_path):
    left = (np.sin(np.arange(4410) / 10) * 10000).astype("<i2")
    stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    path = write_pcm(tmp_path / "stereo.wav", stereo, 44100, channels=2)
    samples = read_wav(path, RATE)
    assert len(samples) == 800  # 0.1 s at 8 kHz
    assert np.abs(samples).max() == pytest.approx(np.abs(left / 32768 / 2).max(), rel=0.05)
    with pytest.raises(DataError, match=r"44100 Hz, not 8000 Hz \(set data.resample=true"):
        read_wav(path, RATE, resample=False)


def test_a_non_wav_file_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "x.wav"
    fake.write_bytes(b"ID3 this is an mp3")
    with pytest.raises(DataError, match="not a PCM WAV file") as err:
        read_wav(fake, RATE)
    assert "\n" not in str(err.value)
    fake.write_bytes(b"junk\n")  # shorter than a header: EOFError, which carries no message
    with pytest.raises(DataError, match=r"x.wav: not a PCM WAV file \(the file ends before its header does\)$"):
        read_wav(fake, RATE)


# --- features ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "size"), [("logmel", 40), ("mfcc", 13)])
def test_feature_shapes_and_determinism(kind, size):
    features = Features(kind=kind)
    samples = tone(3, 0, 0)
    first, second = features(samples), features(samples.copy())
    assert first.shape == (size, 1 + len(samples) // 80) == (size, features.frames_for(len(samples)))
    assert np.array_equal(first, second) and np.isfinite(first).all()
    assert features(np.zeros(4000, np.float32))[:, 5] == pytest.approx(features.silence())


def test_utterance_mean_removal_cancels_a_change_of_gain():
    samples = tone(5, 1, 2)
    plain, cmn = Features(), Features(utterance_mean=True)
    assert np.abs(plain(4 * samples) - plain(samples)).mean() > 2  # log power rises by log 16
    assert np.abs(cmn(4 * samples) - cmn(samples)).max() < 0.05
    assert np.abs(cmn(samples).mean(axis=1)).max() < 1e-5


def test_log_mel_puts_a_tone_in_its_own_band():
    t = np.arange(8000) / RATE
    low, high = (Features()(np.sin(2 * np.pi * f * t).astype(np.float32)).mean(axis=1) for f in (300, 2500))
    assert low.argmax() < high.argmax()


def test_a_clip_shorter_than_half_a_window_is_read_as_followed_by_silence():
    features = Features()  # n_fft 256: torch.stft's reflection padding needs 129 samples
    clip = tone(3, 0, 0)[:10]
    assert np.array_equal(features(clip), features(np.pad(clip, (0, 119))))
    assert features(clip).shape == (features.size, 2)


def test_bad_feature_settings_get_one_line():
    with pytest.raises(ConfigError, match="valid: logmel, mfcc"):
        Features.from_config({"features": {"kind": "chroma"}})
    with pytest.raises(ConfigError, match="unknown data.features key"):
        Features.from_config({"features": {"n_mel": 40}})


# --- FSDD splits and preparation ------------------------------------------------------------
def test_official_split_tests_recordings_0_to_4_and_trains_on_the_rest(fsdd_root, tmp_path):
    meta = prepare(data_config("fsdd", fsdd_root), tmp_path / "official")
    _, splits = load_all(tmp_path / "official")
    assert meta.kind == "audio" and meta.input_shape == [40, 96]
    assert (splits["test"]["recording"] < 5).all()
    assert (splits["train"]["recording"] >= 5).all() and (splits["val"]["recording"] >= 5).all()
    assert meta.splits["test"] == 10 * 3 * 5 and meta.splits["train"] + meta.splits["val"] == 10 * 3 * 5
    assert splits["train"]["x"].shape[1:] == (40, 96)
    # per-feature normalisation from the training split's real frames only
    train, lengths = splits["train"]["x"], splits["train"]["lengths"]
    real = torch.cat([x[:, :n] for x, n in zip(train, lengths, strict=True)], dim=1)
    assert real.mean(dim=1).abs().max() < 1e-4 and (real.std(dim=1) - 1).abs().max() < 1e-2
    again = prepare(data_config("fsdd", fsdd_root), tmp_path / "again")
    assert again.checksum == meta.checksum


def test_speaker_split_holds_one_speaker_out_of_training(fsdd_root, tmp_path):
    meta = prepare(data_config("fsdd_speaker", fsdd_root, "data.test_speaker=jackson"), tmp_path / "s")
    _, splits = load_all(tmp_path / "s")
    held = meta.extra["audio"]["speakers"].index("jackson")
    assert (splits["test"]["speaker"] == held).all() and meta.splits["test"] == 10 * 10
    assert held not in splits["train"]["speaker"].tolist() + splits["val"]["speaker"].tolist()
    with pytest.raises(ConfigError, match="one of: george, jackson, lucas"):
        prepare(data_config("fsdd_speaker", fsdd_root, "data.test_speaker=alice"), tmp_path / "bad")


def test_fsdd_pins_its_recordings_by_the_md5_listing(fsdd_root, tmp_path):
    listing = recordings_listing(fsdd_root / "recordings", [p.name for p in (fsdd_root / "recordings").glob("*.wav")])
    prepare(data_config("fsdd", fsdd_root, f"data.md5={listing}"), tmp_path / "pinned")
    with pytest.raises(DataError, match=f"MD5 listing is {listing}, not the official 0+"):
        prepare(data_config("fsdd", fsdd_root, f"data.md5={'0' * 32}"), tmp_path / "wrong")


def test_fsdd_downloads_the_repository_archive(tmp_path):
    source = make_fsdd(tmp_path / "src")
    archive = tmp_path / "fsdd.zip"
    with zipfile.ZipFile(archive, "w") as bundle:  # GitHub's archive layout: <repo>-<commit>/recordings/
        for wav in sorted((source / "recordings").glob("*.wav")):
            bundle.write(wav, f"free-spoken-digit-dataset-26eb9aa/recordings/{wav.name}")
        bundle.writestr("free-spoken-digit-dataset-26eb9aa/README.md", "FSDD")
    root = tmp_path / "fetched"
    cfg = data_config("fsdd", root, "data.download=true", f"data.url={archive.as_uri()}")
    meta = prepare(cfg, tmp_path / "prepared")
    assert meta.source["recordings"] == 300 and len(list((root / "recordings").glob("*.wav"))) == 300


def test_the_real_fsdd_listing_matches_its_published_md5sums():
    if not REAL_FSDD.is_dir():
        pytest.skip("../shared/datasets/fsdd is not beside the checkout")
    names = [p.name for p in REAL_FSDD.glob("*.wav")]
    assert len(names) == 3000
    assert recordings_listing(REAL_FSDD, names) == compose(["data=fsdd"]).data.md5


@pytest.mark.parametrize("layout", ["empty", "stray"])
def test_bad_audio_folders_get_one_line_and_exit_2(tmp_path, layout):
    root = tmp_path / "words"
    (root / "yes").mkdir(parents=True)
    (root / "no").mkdir()
    if layout == "stray":
        write_wav(root / "yes" / "a.wav", tone(1, 0, 0), RATE)
        (root / "no" / "b.mp3").write_bytes(b"ID3")
    result = call_cli("archbench-prepare", "audio_folder", f"data.root={root}", f"paths.data_dir={tmp_path / 'p'}")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert ("no WAV files under" in line) if layout == "empty" else ("b.mp3: not a .wav file" in line)


def test_audio_folder_reads_class_folders_resampling_other_rates(tmp_path):
    root = tmp_path / "words"
    for label, name in enumerate(("no", "yes")):
        (root / name).mkdir(parents=True)
        for i in range(10):
            rate = 16000 if i % 2 else RATE
            t = np.arange(int(0.2 * rate)) / rate
            pcm = (np.sin(2 * np.pi * (300 + 900 * label) * t) * 8000).astype("<i2")
            write_pcm(root / name / f"{i}.wav", pcm, rate)
    meta = prepare(data_config("audio_folder", root, "data.frames=32"), tmp_path / "p")
    assert meta.class_names == ["no", "yes"] and meta.input_shape == [40, 32]
    assert sum(meta.splits.values()) == 20
    # a class's sub-folders are read; a Mac zip's ._* copies and __MACOSX/ are not recordings
    (root / "yes" / "take2").mkdir()
    (root / "yes" / "9.wav").rename(root / "yes" / "take2" / "9.wav")
    (root / "no" / "._0.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "__MACOSX" / "no").mkdir(parents=True)
    (root / "__MACOSX" / "no" / "._0.wav").write_bytes(b"\x00\x05\x16\x07")
    nested = prepare(data_config("audio_folder", root, "data.frames=32"), tmp_path / "nested")
    assert nested.class_names == ["no", "yes"] and sum(nested.splits.values()) == 20
    # train/ with a given validation/ tree (before: two classes named "train" and "validation")
    split = tmp_path / "split"
    for name in ("no", "yes"):
        for i, path in enumerate(sorted(p for p in (root / name).rglob("*.wav") if not p.name.startswith("."))):
            folder = split / ("validation" if i < 3 else "train") / name
            folder.mkdir(parents=True, exist_ok=True)
            path.rename(folder / path.name)
    given = prepare(data_config("audio_folder", split, "data.frames=32"), tmp_path / "given")
    assert given.class_names == ["no", "yes"] and given.splits["val"] == 6 and sum(given.splits.values()) == 20
    assert given.source["split"] == "given (validation/ sub-tree)"


# --- spoken strings -----------------------------------------------------------------------------
def test_a_string_is_its_recordings_with_silences_between():
    waves = [np.full(100, 0.1 * (i + 1), np.float32) for i in range(4)]
    rng = np.random.default_rng(0)
    samples, digits, used = synthesize_string(waves, np.array([7, 8, 9, 6]), StringSpec(2, 5), rng, RATE)
    assert 2 <= len(digits) <= 5 and digits == [[7, 8, 9, 6][i] for i in used]
    voiced = samples[samples != 0]
    assert np.array_equal(voiced, np.concatenate([waves[i] for i in used]))


def test_strings_use_their_own_splits_recordings_only(fsdd_root, tmp_path):
    cfg = data_config("fsdd_strings", fsdd_root, "data.strings.test_strings=40", "data.strings.val_strings=20",
                      "data.strings.fit_strings=20")
    meta = prepare(cfg, tmp_path / "strings")
    _, splits = load_all(tmp_path / "strings")
    assert meta.task == "ctc" and meta.splits["test"] == 40
    assert (splits["train"]["recording"] >= 5).all()  # training strings are drawn from these only
    used = splits["test"]["part_recording"]
    assert (used[used >= 0] < 5).all()  # test strings: test recordings only
    val_used = splits["val"]["part_recording"]
    assert (val_used[val_used >= 0] >= 5).all()
    lengths = splits["test"]["y_lengths"]
    assert lengths.min() >= 1 and lengths.max() <= 7
    waves = unpack_pcm(splits["test"]["pcm"].numpy(), splits["test"]["offsets"].numpy())
    assert len(waves) == 40 and all(len(w) > 0 for w in waves)


def test_speaker_split_strings_test_only_the_held_out_speaker(fsdd_root, tmp_path):
    cfg = data_config("fsdd_strings", fsdd_root, "data.split=speaker", "data.test_speaker=lucas",
                      "data.strings.test_strings=30", "data.strings.val_strings=10", "data.strings.fit_strings=10")
    meta = prepare(cfg, tmp_path / "strings")
    _, splits = load_all(tmp_path / "strings")
    held = meta.extra["audio"]["speakers"].index("lucas")
    used = splits["test"]["part_speaker"]
    assert set(used[used >= 0].tolist()) == {held}
    assert held not in splits["train"]["speaker"].tolist()


# --- CTC decoding and error rates --------------------------------------------------------------
def frames_of(symbols: list[int], classes: int = 4, p: float = 0.97) -> torch.Tensor:
    log_probs = torch.full((len(symbols), classes), math.log((1 - p) / (classes - 1)))
    log_probs[torch.arange(len(symbols)), torch.tensor(symbols)] = math.log(p)
    return log_probs


def test_ctc_decoders_merge_repeats_and_drop_blanks():
    blank = 3
    path = [blank, 1, 1, blank, 1, 2, 2, blank, blank, 0]  # → 1 1 2 0
    log_probs = frames_of(path)
    assert ctc_greedy(log_probs[None], torch.tensor([len(path)]), blank) == [[1, 1, 2, 0]]
    assert ctc_prefix_beam(log_probs, len(path), blank, beam_size=4) == [1, 1, 2, 0]
    assert ctc_greedy(log_probs[None], torch.tensor([3]), blank) == [[1]]  # only the frames that count


def test_prefix_beam_sums_the_paths_that_greedy_misses():
    # two frames, P(a) = 0.4, P(blank) = 0.6 each: best path "" (0.36), but "a" totals 0.64
    log_probs = torch.log(torch.tensor([[0.4, 0.6], [0.4, 0.6]]))
    assert ctc_greedy(log_probs[None], torch.tensor([2]), 1) == [[]]
    assert ctc_prefix_beam(log_probs, 2, 1, beam_size=4) == [0]


@pytest.mark.parametrize(("hypotheses", "references", "expected"), [
    (["1 2 3"], ["1 2 3"], 0.0),
    (["1 3"], ["1 2 3"], 1 / 3),            # one deletion
    (["1 2 2 3"], ["1 2 3"], 1 / 3),        # one insertion
    (["4 2 3"], ["1 2 3"], 1 / 3),          # one substitution
    ([""], ["5 5"], 1.0),                   # nothing heard
    (["1", "7 7"], ["1 2", "7 7"], 1 / 4),  # pooled over strings: 1 error in 4 digits
])
def test_digit_error_rate_on_hand_cases(hypotheses, references, expected):
    assert digit_error_rate(hypotheses, references) == pytest.approx(expected)


# --- nets and augmentation ---------------------------------------------------------------------
@pytest.mark.parametrize(("view", "shape"), [("frames", [40, 96]), ("image", [1, 40, 96]), ("pooled", [80])])
def test_feature_views(view, shape):
    front = FeatureView(view)
    assert front.shape([40, 96]) == shape
    assert list(front(torch.randn(2, 40, 96)).shape[1:]) == shape
    with pytest.raises(ConfigError, match="valid: frames, image, pooled"):
        FeatureView("spectrum")


def test_deepspeech_output_lengths_match_its_frames():
    net = DeepSpeech([40, 0], 11, channels=(4, 4), hidden_size=16).eval()
    for frames in (17, 50, 101):
        logits = net(torch.randn(1, 40, frames))
        assert logits.shape[-1] == 11 and logits.shape[1] == int(net.output_lengths(torch.tensor([frames])))


def test_deepspeech_ignores_padding_frames():
    net = DeepSpeech([40, 0], 11, channels=(4, 4), hidden_size=16).eval()
    x = torch.randn(1, 40, 60)
    padded = torch.cat([x, torch.randn(1, 40, 30)], dim=2)  # 30 frames of padding noise
    alone = net(x)
    in_batch = net(torch.cat([padded, torch.randn(1, 40, 90)]), torch.tensor([60, 90]))
    assert torch.allclose(alone, in_batch[:1, : alone.shape[1]], atol=1e-5)


def test_spec_augment_masks_and_mel_noise():
    torch.manual_seed(0)
    x = torch.randn(8, 40, 96)
    masked = mask_bands(x, 10, 2, axis=-1)
    zero_frames = (masked == 0).all(dim=1).sum(dim=1)
    assert (zero_frames <= 20).all() and zero_frames.sum() > 0
    mean, std = torch.full((40,), -5.0), torch.full((40,), 2.0)
    noisy = noise_in_mel_power(x, (0.0, 0.0), mean, std)
    assert (noisy > x).all()  # noise only adds power
    loud = noise_in_mel_power(x, (60.0, 60.0), mean, std)
    assert (loud - x).abs().max() < (noisy - x).abs().max()


def test_audio_augmentation_is_refused_where_it_has_no_meaning():
    with pytest.raises(ConfigError, match="need audio"):
        Augmentation.from_data_config({"augment_time_mask": 5}, "image")
    with pytest.raises(ConfigError, match="these are MFCCs"):
        Augmentation.from_data_config({"augment_noise_snr": [5, 20]}, "audio", {"features": {"kind": "mfcc"}})


# --- training and the transcribe CLI -------------------------------------------------------------
@pytest.mark.parametrize(("model", "inner"), [("cnn", "ConvNet"), ("gru", "RecurrentNet"), ("lstm", "RecurrentNet"),
                                            ("transformer", "TransformerClassifier"), ("mlp", "MLP")])
def test_every_classifier_reads_spectrograms_in_its_audio_form(model, inner):
    from types import SimpleNamespace

    from archbench.tasks.classification import TASK

    cfg = compose(["data=fsdd", f"model={model}"])
    meta = SimpleNamespace(kind="audio", num_classes=10, name="fsdd", extra={})
    net = TASK._net(cfg, [40, 96], meta)
    assert type(net.net).__name__ == inner and net.view.view == cfg.model.audio_view
    assert net(torch.randn(3, 40, 96)).shape == (3, 10)


def test_a_cnn_trains_on_fsdd_spectrograms_and_predict_classifies_a_wav(make_cfg, fsdd_root, tmp_path):
    import json

    from archbench.train import train

    cfg = make_cfg("data=fsdd", "model=cnn", f"data.root={fsdd_root}", "data.md5=null", "trainer.max_epochs=1",
                   "data.augment_noise_snr=[10,30]", "logger.log_model=true", output="audio-cnn")
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1 and metrics["parameters"] > 0
    uri = json.loads((tmp_path / "audio-cnn" / "run.json").read_text())["model_uri"]
    wav = fsdd_root / "recordings" / "3_lucas_0.wav"
    result = call_cli("archbench-predict", str(wav), "--model-uri", uri, "--tracking-uri", cfg.logger.tracking_uri)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header == "index,label,probability,top,file" and row.split(",")[1] in [str(d) for d in range(10)]
    tensor = call_cli("archbench-predict", str(tmp_path / "x.npy"), "--model-uri", uri,
                      "--tracking-uri", cfg.logger.tracking_uri)
    assert tensor.returncode == 2 and "classifies recordings: give a .wav file" in tensor.stderr
    _served_like_predicted(uri, cfg.logger.tracking_uri, fsdd_root, tmp_path)


def _served_like_predicted(uri: str, store: str, fsdd_root: Path, tmp_path: Path) -> None:
    """A folder of WAVs through archbench-predict (hidden and non-WAV files skipped) and the same
    files base64-encoded through the raw-input pyfunc: the same labels and probabilities."""
    import base64
    import shutil

    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    clips = tmp_path / "clips"
    (clips / "day2").mkdir(parents=True)
    names = ["0_george_1.wav", "5_jackson_2.wav", "day2/9_lucas_3.wav"]
    for name in names:
        shutil.copy(fsdd_root / "recordings" / Path(name).name, clips / name)
    (clips / "._0_george_1.wav").write_bytes(b"\x00\x05\x16\x07 a Mac resource fork")
    (clips / "notes.txt").write_text("not a recording")
    printed = call_cli("archbench-predict", str(clips), "--model-uri", uri, "--tracking-uri", store)
    assert printed.returncode == 0, printed.stderr
    rows = [line.split(",") for line in printed.stdout.strip().splitlines()[1:]]
    assert [r[-1] for r in rows] == [str(clips / n) for n in names]
    exported = call_cli("archbench-export", "--model-uri", uri, "--tracking-uri", store, "--format", "pyfunc",
                        "--output", str(tmp_path / "pyfunc-export"), "--no-log")
    assert exported.returncode == 0 and "audio inputs" in exported.stdout, exported.stderr[-3000:]
    served = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc-export" / "pyfunc"))
    encoded = [base64.b64encode((clips / n).read_bytes()).decode() for n in names]
    answer = served.predict(pd.DataFrame({"audio": encoded}))
    assert answer["label"].tolist() == [r[1] for r in rows]
    assert [f"{p:.4f}" for p in answer["probability"]] == [r[2] for r in rows]
    with pytest.raises(MlflowException, match="audio 1: not a PCM WAV file"):
        served.predict(pd.DataFrame({"audio": [encoded[0], base64.b64encode(b"plain text").decode()]}))
    with pytest.raises(MlflowException, match="audio 0: not base64"):
        served.predict(pd.DataFrame({"audio": ["not base64!"]}))


@pytest.mark.slow
def test_deepspeech_trains_and_the_cli_transcribes_a_real_fsdd_file(make_cfg, fsdd_root, tmp_path):
    import json

    from archbench.train import train

    cfg = make_cfg("data=fsdd_strings", "model=deepspeech", f"data.root={fsdd_root}", "data.md5=null",
                   "trainer.max_epochs=1", "data.steps_per_epoch=3", "data.batch_size=8",
                   "data.strings.test_strings=12", "data.strings.val_strings=8", "data.strings.fit_strings=8",
                   "model.net.channels=[4,4]", "model.net.hidden_size=16", "model.decode.beam_size=3",
                   "logger.log_model=true", "data.augment_noise_snr=[10,30]", output="ctc")
    metrics = train(cfg)
    assert {"test/wer", "test/wer_greedy", "test/wer_beam", "test/ser"} <= set(metrics)
    assert metrics["test/ser"] <= 1 and metrics["test/wer"] >= 0
    rows = (tmp_path / "ctc" / "transcripts.tsv").read_text().splitlines()
    assert rows[0] == "reference\tgreedy\tbeam" and len(rows) == 13
    run = json.loads((tmp_path / "ctc" / "run.json").read_text())
    real = REAL_FSDD / "7_theo_3.wav"
    wav = real if real.is_file() else write_wav(tmp_path / "7_x_0.wav", tone(7, 0, 0), RATE)
    result = call_cli("archbench-transcribe", str(wav), "--model-uri", run["model_uri"],
                      "--tracking-uri", cfg.logger.tracking_uri)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header == "file,digits" and row.startswith(f"{wav},")
    assert all(d in "0123456789 " for d in row.split(",", 1)[1])
    missing = call_cli("archbench-transcribe", str(tmp_path / "none.wav"), "--model-uri", run["model_uri"])
    assert missing.returncode == 2 and "no input file" in missing.stderr
    folder = tmp_path / "wavs"  # a folder: its .wav files, sub-folders too; a 2 ms clip (before: a traceback)
    (folder / "sub").mkdir(parents=True)
    write_wav(folder / "sub" / "clip.wav", tone(3, 0, 0)[:16], RATE)
    (folder / "notes.txt").write_text("not audio")
    listed = call_cli("archbench-transcribe", str(folder), "--model-uri", run["model_uri"],
                      "--tracking-uri", cfg.logger.tracking_uri)
    assert listed.returncode == 0, listed.stderr
    assert [r.split(",")[0] for r in listed.stdout.splitlines()] == ["file", str(folder / "sub" / "clip.wav")]
    (tmp_path / "empty").mkdir()
    empty = call_cli("archbench-transcribe", str(tmp_path / "empty"), "--model-uri", run["model_uri"])
    assert empty.returncode == 2 and f"no .wav files in {tmp_path / 'empty'}" in empty.stderr



def test_missing_fsdd_says_what_to_put_where_and_exits_2(tmp_path):
    result = call_cli("archbench-prepare", "fsdd", f"data.root={tmp_path / 'nowhere'}", f"paths.data_dir={tmp_path / 'p'}")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "no FSDD recordings in" in line and "recordings/" in line and "data.download=true" in line


# --- the report and the speech pipeline ---------------------------------------------------------
def test_audio_section_averages_the_held_out_speakers(tmp_path):
    import json

    from archbench.report.speech import audio_section
    from archbench.tasks.base import RunResult

    def run(model: str, split: str, speaker: str | None, acc: float) -> RunResult:
        folder = tmp_path / f"{model}-{split}-{speaker}"
        folder.mkdir()
        features = {"kind": "logmel", "utterance_mean": split == "speaker"}
        (folder / "meta.json").write_text(json.dumps({"kind": "audio", "source": {"split": split, "test_speaker": speaker},
                                                      "extra": {"audio": {"features": features}}}))
        return RunResult(folder, {"model": model, "data": "fsdd", "data_dir": str(folder), "seed": 42},
                         {"test/acc": acc, "parameters": 10, "train_seconds": 1.0})

    runs = [run("cnn", "official", None, 0.99), run("cnn", "speaker", "george", 0.8),
            run("cnn", "speaker", "theo", 0.9), run("gru", "official", None, 0.97)]
    table = "\n".join(audio_section(runs, tmp_path))
    assert "| cnn | log-mel / log-mel − utterance mean | 10 | 99.0 | 85.0 (2 folds) | 80.0 | 90.0 | 1 |" in table
    assert "| gru | log-mel | 10 | 97.0 | – | – | – | 1 |" in table


def test_speech_pipeline_resolves_and_stays_out_of_the_default_repro():
    import yaml
    from dvc.repo import Repo

    params = yaml.safe_load((REPO / "speech" / "params.yaml").read_text())
    for item in params["pairs"].values():
        assert (REPO / "conf" / "recipe" / f"{item['data']}_{item['model']}.yaml").is_file()
    assert {item["model"] for item in params["pairs"].values()} >= {"cnn", "gru", "lstm", "transformer", "mlp",
                                                                    "deepspeech"}
    with Repo(str(REPO)) as repo:
        folds = [s for s in repo.stage.collect("speech/dvc.yaml") if "speaker@" in s.addressing]
        assert sorted(s.cmd.split("data.test_speaker=")[1].split()[0] for s in folds) == [
            "george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
        [ctc] = repo.stage.collect("speech/dvc.yaml:train@fsdd_strings-deepspeech")
        assert "data=fsdd_strings model=deepspeech" in ctc.cmd and "data.root=../shared/datasets/fsdd" in ctc.cmd
        upstream = repo.stage.collect("compare", with_deps=True)
        assert upstream and not [s.addressing for s in upstream if "speech" in s.relpath]
