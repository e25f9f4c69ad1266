"""Audio: the Free Spoken Digit Dataset and your own WAV files (one sub-folder per class).

Each returns raw waveforms (``kind='audio'``) as records ``(samples, speaker, recording index)``;
the prepare engine splits them and the audio preparer (``archbench.data.speech``) computes the
features (log-mel or MFCC) with training statistics — or, for ``task: ctc``, spoken digit strings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.audio import read_wav
from archbench.data.sources import Source, md5_of
from archbench.data.sources.folders import (
    check_given,
    check_split_classes,
    class_folders,
    split_folders,
    visible_files,
)
from archbench.errors import ConfigError, DataError

FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
SPLITS = ("official", "speaker")
PREPARERS = {"classification": "archbench.data.speech.prepare_recordings",
             "ctc": "archbench.data.speech.prepare_strings"}


def records(items: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """An object array of ``(samples, speaker id, recording index)`` records (the engine indexes it)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _preparer(cfg: dict[str, Any]) -> tuple[str, str]:
    task = str(cfg.get("task") or "classification")
    if task not in PREPARERS:
        raise ConfigError(f"audio data poses task classification or ctc, not {task!r}; valid: {', '.join(PREPARERS)}")
    return task, PREPARERS[task]


def recordings_listing(folder: Path, names: list[str]) -> str:
    """The MD5 of an ``md5sum``-style listing of ``names`` in ``folder`` (sorted), the one number that
    pins the whole recordings folder."""
    import hashlib

    listing = "".join(f"{md5_of(folder / name)}  {name}\n" for name in sorted(names))
    return hashlib.md5(listing.encode(), usedforsecurity=False).hexdigest()


def _fsdd_folder(cfg: dict[str, Any]) -> Path:
    """``<root>/recordings`` (or ``root`` itself holding the WAVs); with ``data.download=true`` the
    dataset's repository archive at the pinned commit is fetched and unpacked first."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    for folder in (root / "recordings", root):
        if folder.is_dir() and any(folder.glob("*.wav")):
            return folder
    if cfg.get("download"):
        return _download_fsdd(cfg, root)
    raise DataError(f"no FSDD recordings in {root.resolve()}: put the dataset's recordings/ folder "
                    f"({{digit}}_{{speaker}}_{{index}}.wav) there, set data.root=DIR, or data.download=true")


def _download_fsdd(cfg: dict[str, Any], root: Path) -> Path:
    import shutil
    import zipfile

    from archbench.data.sources import download

    archive = download(str(cfg["url"]), root / "fsdd.zip")
    with zipfile.ZipFile(archive) as bundle:
        members = [m for m in bundle.namelist() if "/recordings/" in m and m.endswith(".wav")]
        if not members:
            raise DataError(f"{archive} holds no recordings/*.wav (delete it and download again)")
        target, staging = root / "recordings", root / ".recordings-extracting"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for member in members:  # into a staging folder: an interrupted run leaves no partial set
            with bundle.open(member) as source, (staging / Path(member).name).open("wb") as sink:
                shutil.copyfileobj(source, sink)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def fsdd(cfg: dict[str, Any]) -> Source:
    """FSDD: ``{digit}_{speaker}_{index}.wav``. ``data.split=official`` (the dataset's README:
    recording index 0-4 test, 5-49 train) or ``speaker`` (``data.test_speaker``'s recordings are
    the test set, the other speakers train)."""
    task, preparer = _preparer(cfg)
    folder = _fsdd_folder(cfg)
    names = sorted(p.name for p in folder.glob("*.wav"))
    parsed = [FSDD_NAME.match(n) for n in names]
    odd = next((n for n, m in zip(names, parsed, strict=True) if m is None), None)
    if odd is not None:
        raise DataError(f"{folder / odd}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav)")
    expected = cfg.get("md5")
    actual = recordings_listing(folder, names)
    if expected and actual != expected:
        raise DataError(f"{folder}: the recordings' MD5 listing is {actual}, not the official {expected} "
                        f"({len(names)} files; the dataset has 3,000 at the pinned commit)")
    speakers = sorted({m.group(2) for m in parsed})
    split, held = str(cfg.get("split", "official")), cfg.get("test_speaker")
    if split not in SPLITS:
        raise ConfigError(f"unknown data.split {split!r}; valid: {', '.join(SPLITS)}")
    if split == "speaker" and held not in speakers:
        raise ConfigError(f"data.split=speaker needs data.test_speaker, one of: {', '.join(speakers)} (got {held!r})")
    rate, resample = int(cfg.get("sample_rate", 8000)), bool(cfg.get("resample", True))
    pool, test = [], []
    for name, match in zip(names, parsed, strict=True):
        digit, speaker, index = int(match.group(1)), match.group(2), int(match.group(3))
        record = (read_wav(folder / name, rate, resample), speakers.index(speaker), index)
        is_test = index < int(cfg.get("test_below_index", 5)) if split == "official" else speaker == held
        (test if is_test else pool).append((record, digit))
    info = {"origin": str(folder.resolve()), "recordings": len(names), "md5_listing": actual,
            "speakers": speakers, "split": split, "test_speaker": held if split == "speaker" else None}
    return _audio_source(pool, test, [str(d) for d in range(10)], info, task, preparer)


def _audio_source(pool, test, classes, info, task, preparer, val=()) -> Source:
    def arrays(items):
        return records([r for r, _ in items]), np.asarray([y for _, y in items], dtype=np.int64)

    x_pool, y_pool = arrays(pool)
    x_test, y_test = arrays(test) if test else (None, None)
    x_val, y_val = arrays(val) if val else (None, None)
    return Source(x_pool, y_pool, x_test, y_test, "audio", [], classes, info, task=task, preparer=preparer,
                  x_val=x_val, y_val=y_val)


def _wav_files(folder: Path) -> list[Path]:
    files = sorted(visible_files(folder))  # sub-folders included; a Mac's ._* copies are not recordings
    other = next((p for p in files if p.suffix.lower() != ".wav"), None)
    if other is not None:
        raise DataError(f"{other}: not a .wav file; an audio folder holds PCM WAV files only "
                        f"(convert it, or move it out of {folder})")
    return files


def audio_folder(cfg: dict[str, Any]) -> Source:
    """``root/<class>/*.wav`` (seeded validation and test splits are carved later), or
    ``root/train/<class>`` with ``root/test/<class>`` and/or ``root/val/<class>`` (or ``valid/``,
    ``validation/``) when those recordings are given."""
    task, preparer = _preparer(cfg)
    root = Path(str(cfg.get("root") or "")).expanduser()
    if not cfg.get("root") or not root.is_dir():
        raise DataError(f"audio folder not found: {root.resolve()}; set data.root=DIR with one "
                        f"sub-folder of WAV files per class")
    if str(cfg.get("split", "official")) != "official":
        raise ConfigError("data.split=speaker needs speaker names (FSDD's file names); an audio folder "
                          "splits by a given test/ tree or a seeded share")
    splits = split_folders(root)
    train_root = splits["train"]
    classes = [p.name for p in class_folders(train_root)]
    if len(classes) < 2:
        raise DataError(f"{train_root} needs one sub-folder of WAV files per class (at least two); found "
                        f"{len(classes)}")
    check_split_classes(splits, classes)
    rate, resample = int(cfg.get("sample_rate", 8000)), bool(cfg.get("resample", True))

    def read(tree: Path):
        items = []
        for label, name in enumerate(classes):
            folder = tree / name
            for index, path in enumerate(_wav_files(folder) if folder.is_dir() else []):
                items.append(((read_wav(path, rate, resample), -1, index), label))
        return items

    pool = read(train_root)
    test, val = (read(splits[split]) if split in splits else [] for split in ("test", "val"))
    for split, items in (("test", test), ("val", val)):
        if split in splits:
            check_given(splits[split], len(items), "WAV files", classes)
    if not pool:
        raise DataError(f"no WAV files under {train_root}: put one sub-folder of .wav files per class there")
    given = [f"{splits[split].name}/" for split in ("val", "test") if split in splits]
    info = {"origin": str(root.resolve()), "recordings": len(pool) + len(test) + len(val), "speakers": [],
            "split": f"given ({' and '.join(given)} sub-tree{'s' if len(given) > 1 else ''})" if given else "seeded"}
    return _audio_source(pool, test, classes, info, task, preparer, val)
