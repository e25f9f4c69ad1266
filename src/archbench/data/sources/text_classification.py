"""Labelled texts for classification: GLUE SST-2, IMDB (aclImdb) and your own CSV/TSV or folder.

Each returns raw strings (``kind='tokens'``); the prepare engine splits them, builds the
vocabulary from the training split only and encodes them (``archbench.data.tokens``).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import TEXT_ENCODING, Source, download, extract_archive, md5_of, utf8
from archbench.data.sources.folders import (
    check_given,
    check_split_classes,
    class_folders,
    other_files,
    split_folders,
    visible_files,
)
from archbench.errors import ConfigError, DataError


def _texts_checksum(*parts: tuple[list[str], np.ndarray]) -> str:
    digest = hashlib.sha256()
    for texts, labels in parts:
        for text in texts:
            digest.update(text.encode("utf-8") + b"\0")
        digest.update(np.ascontiguousarray(labels).tobytes())
    return "sha256:" + digest.hexdigest()


def _source(train: tuple[list[str], np.ndarray], test: tuple[list[str], np.ndarray] | None,
            class_names: list[str], cfg: dict[str, Any], info: dict[str, Any]) -> Source:
    """A tokens Source; refuses an empty corpus and a label set with a single class."""
    texts, labels = train
    if not texts:
        raise DataError(f"{info.get('origin')}: no examples to learn from (empty corpus)")
    present = sorted({class_names[i] for i in labels.tolist()})
    if len(present) < 2:
        raise DataError(f"{info.get('origin')}: every training example has label {present[0]!r}: "
                        f"nothing to classify (need ≥ 2 classes)")
    info = {**info, "checksum": _texts_checksum(train, *([test] if test else []))}
    x_test, y_test = (np.array(test[0], dtype=object), test[1]) if test else (None, None)
    return Source(np.array(texts, dtype=object), labels, x_test, y_test, "tokens",
                  [int(cfg.get("max_len", 64))], class_names, info,
                  preparer="archbench.data.tokens.prepare_texts")


def _read_tsv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    with utf8(path), path.open(encoding=TEXT_ENCODING, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column(s) {missing}; columns: {', '.join(reader.fieldnames or [])}")
        rows = [(row[text_column].strip(), row[label_column].strip()) for row in reader]
    return [r[0] for r in rows], [r[1] for r in rows]


def sst2(cfg: dict[str, Any]) -> Source:
    """GLUE SST-2 from ``root`` (``train.tsv``, ``dev.tsv``); ``dev`` is the test split (GLUE's test
    labels are hidden) and validation is carved from train. ``download: true`` fetches GLUE's
    SST-2.zip (MD5-checked) and extracts it into ``root`` first."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    files = {"train": root / "train.tsv", "test": root / "dev.tsv"}
    if not all(p.is_file() for p in files.values()) and cfg.get("download"):
        archive = download(str(cfg["url"]), root / "SST-2.zip", cfg.get("archive_md5"))
        with zipfile.ZipFile(archive) as zipped:
            for name in ("train.tsv", "dev.tsv", "test.tsv"):
                member = next((m for m in zipped.namelist() if m.endswith(f"SST-2/{name}")), None)
                if member:
                    with zipped.open(member) as src, (root / name).open("wb") as dst:
                        shutil.copyfileobj(src, dst)
    if not all(p.is_file() for p in files.values()):
        raise DataError(f"SST-2 not found: put GLUE's train.tsv and dev.tsv in {root.resolve()} "
                        f"(data.root=DIR, e.g. ../shared/datasets/sst2), or set data.download=true")
    files_md5 = {p.name: md5_of(p) for p in files.values()}
    for name, md5 in (cfg.get("md5") or {}).items():
        actual = files_md5.get(name) or md5_of(root / name)
        if md5 and actual != md5:
            raise DataError(f"{root / name} has MD5 {actual}, not GLUE's {md5} "
                            f"(another version? set data.md5=null to accept it)")
    class_names = ["negative", "positive"]
    splits = {}
    for split, path in files.items():
        texts, labels = _read_tsv(path, "sentence", "label")
        bad = sorted(set(labels) - {"0", "1"})
        if bad:
            raise DataError(f"{path}: labels must be 0 or 1, found {bad[:3]}")
        splits[split] = (texts, np.asarray([int(v) for v in labels], dtype=np.int64))
    info = {"origin": str(root.resolve()), "test_split": "GLUE dev.tsv", "files_md5": files_md5}
    if str(cfg.get("val_split", "phrases")) == "phrases":
        return _source(splits["train"], splits["test"], class_names, cfg, info)
    if str(cfg["val_split"]) != "sentences":
        raise ConfigError(f"data.val_split={cfg['val_split']!r}: choose phrases or sentences")
    train, val, dropped = sentence_validation(*splits["train"], int(cfg.get("val_sentences", 872)),
                                              int(cfg.get("seed", 42)))
    source = _source(train, splits["test"], class_names, cfg,
                     {**info, "val_split": f"{len(val[0])} training sentences; {dropped} phrases "
                                           f"inside them left the training split"})
    source.x_val, source.y_val = np.array(val[0], dtype=object), val[1]
    return source


def _spans(tokens: list[str]) -> set[str]:
    return {" ".join(tokens[i:j]) for i in range(len(tokens)) for j in range(i + 1, len(tokens) + 1)}


def sentence_validation(texts: list[str], labels: np.ndarray, count: int, seed: int):
    """SST-2's train.tsv mixes 6,885 sentences with their 60k labelled sub-phrases, so a random
    share of it validates on phrases whose sentence is in training: it reads ~90 % where GLUE dev
    (whole unseen sentences) reads ~81 %. Here validation is ``count`` seeded, stratified
    sentences (texts no longer phrase contains: SST-2's own sentences, as long as dev's on
    average), and a phrase leaves training when it occurs inside one of them and inside no
    training sentence (SST labels each distinct phrase once, so a shared one tells nothing the
    training sentences do not); ``(train, val, dropped)``."""
    from sklearn.model_selection import train_test_split

    tokens = [text.split() for text in texts]  # GLUE's files are already tokenized by spaces
    joined = [" ".join(words) for words in tokens]
    inner: set[str] = set()
    for words in tokens:
        inner |= _spans(words) - {" ".join(words)}
    first: dict[str, int] = {}
    for i, text in enumerate(joined):
        if text not in inner:
            first.setdefault(text, i)  # a sentence listed twice is one candidate
    sentences = np.array(sorted(first.values()))
    if not 0 < count < len(sentences):
        raise ConfigError(f"data.val_sentences={count}: choose 1..{len(sentences) - 1} "
                          f"(the training file has {len(sentences)} sentences)")
    _, val_idx = train_test_split(sentences, test_size=count, random_state=seed,
                                  stratify=labels[sentences])
    val_texts = {joined[i] for i in val_idx}
    seen = set().union(*(_spans(tokens[i]) for i in sentences if joined[i] not in val_texts))
    held = set().union(*(_spans(tokens[i]) for i in val_idx)) - seen
    keep = [i for i, text in enumerate(joined) if text not in held]
    val_idx = np.sort(val_idx)
    return (([texts[i] for i in keep], labels[keep]), ([texts[i] for i in val_idx], labels[val_idx]),
            len(texts) - len(keep) - len(val_idx))


def _read_class_folders(root: Path, class_names: list[str], strict: bool = True) -> tuple[list[str], np.ndarray]:
    """Every ``.txt`` file of each class folder, its sub-folders included; hidden files are not
    texts (a Mac's ``._*`` copies are binary) and other files are counted in a warning. ``strict``:
    a file that is not UTF-8 is one line naming it (IMDB's published files are read as before,
    undecodable bytes replaced)."""
    texts, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        files = sorted(p for p in visible_files(root / name) if p.suffix.lower() == ".txt")
        others = other_files(root / name, files)
        skipped += [f"{others} in {name}"] if others else []
        for path in files:
            with utf8(path):
                texts.append(path.read_text(encoding=TEXT_ENCODING, errors="strict" if strict else "replace").strip())
            labels.append(label)
    if skipped:
        print(f"archbench: warning: {root}: skipped files that are not .txt: {'; '.join(skipped)}", flush=True)
    return texts, np.asarray(labels, dtype=np.int64)


def imdb(cfg: dict[str, Any]) -> Source:
    """The Large Movie Review Dataset in its published layout ``aclImdb/{train,test}/{neg,pos}/*.txt``
    under ``root``; ``download: true`` fetches the official tarball (MD5-checked) and extracts it.
    ``train/unsup`` (unlabelled) is ignored."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    tree = root / "aclImdb"
    if not (tree / "train").is_dir() and cfg.get("download"):
        archive = download(str(cfg["url"]), root / "aclImdb_v1.tar.gz", cfg.get("archive_md5"))
        extract_archive(archive, root)
    if not all((tree / split / label).is_dir() for split in ("train", "test") for label in ("neg", "pos")):
        raise DataError(f"IMDB not found: put the extracted aclImdb/ folder (train/ and test/, each with "
                        f"neg/ and pos/) in {root.resolve()} (data.root=DIR), or set data.download=true")
    class_names = ["neg", "pos"]
    return _source(_read_class_folders(tree / "train", class_names, strict=False),
                   _read_class_folders(tree / "test", class_names, strict=False), class_names, cfg,
                   {"origin": str(tree.resolve()), "test_split": "aclImdb/test"})


def read_text_table(path: Path):
    """A table of texts with a header row, every cell a string (none read as missing), its
    separator sniffed as data=csv's is: for training (``text_files``) and archbench-predict alike."""
    import pandas as pd

    from archbench.data.sources.table_file import field_separator

    try:
        with utf8(path):
            return pd.read_csv(path, sep=field_separator(path, "auto"), dtype=str, keep_default_na=False,
                               encoding=TEXT_ENCODING)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any parser failure is the file's fault
        raise DataError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def _read_table(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    frame = read_text_table(path)
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name}: no column(s) {missing} (set data.text_column / data.label_column); "
                        f"columns: {', '.join(map(str, frame.columns))}")
    return frame[text_column].tolist(), frame[label_column].str.strip().tolist()


def text_files(cfg: dict[str, Any]) -> Source:
    """Your own labelled texts: ``path`` = a CSV/TSV with ``text_column`` and ``label_column``, or
    a folder with one sub-folder of ``.txt`` files per class (the folder names are the labels)."""
    if not cfg.get("path"):
        raise DataError("data=text_files needs data.path=FILE.csv|FILE.tsv (with data.text_column and "
                        "data.label_column) or data.path=DIR (one sub-folder of .txt files per class)")
    path = Path(str(cfg["path"])).expanduser()
    given: dict[str, tuple[list[str], np.ndarray]] = {}
    if path.is_dir():  # class folders, or train/ with val/ and/or test/ trees of them
        splits = split_folders(path)
        class_names = [p.name for p in class_folders(splits["train"])]
        if not class_names:
            raise DataError(f"no class sub-folders in {path}: put one folder of .txt files per class there")
        check_split_classes(splits, class_names)
        texts, labels = _read_class_folders(splits["train"], class_names)
        given = {split: _read_class_folders(splits[split], class_names) for split in ("val", "test") if split in splits}
        for split, (given_texts, _) in given.items():
            check_given(splits[split], len(given_texts), ".txt files", class_names)
    elif path.is_file():
        texts, names = _read_table(path, str(cfg.get("text_column", "text")), str(cfg.get("label_column", "label")))
        class_names = sorted(set(names))
        lookup = {name: i for i, name in enumerate(class_names)}
        labels = np.asarray([lookup[n] for n in names], dtype=np.int64)
    else:
        raise DataError(f"text data not found: {path.resolve()}; set data.path to a CSV/TSV file or a "
                        f"folder of class sub-folders")
    if cfg.get("test_fraction") is None and "test" not in given:
        raise ConfigError("data.test_fraction must be set for data=text_files (no official test split)")
    source = _source((texts, labels), given.get("test"), class_names, cfg, {"origin": str(path.resolve())})
    if "val" in given:
        source.x_val, source.y_val = np.array(given["val"][0], dtype=object), given["val"][1]
        source.info["checksum"] = _texts_checksum((texts, labels), *given.values())
    return source
