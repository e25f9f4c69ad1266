"""Sentence pairs for sequence-to-sequence learning: Multi30k (task 1) and your own parallel text.

Each returns raw source and target strings (``kind='parallel'``, task ``seq2seq``); the prepare
engine tokenizes them, builds one vocabulary per language from the training split only and encodes
them (``archbench.data.parallel``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import TEXT_ENCODING, Source, check_md5, download, utf8
from archbench.errors import ConfigError, DataError

MULTI30K_LANGUAGES = ("en", "de", "fr")
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def _pairs_checksum(*splits: tuple[list[str], list[str]]) -> str:
    digest = hashlib.sha256()
    for sources, targets in splits:
        for text in (*sources, "\1", *targets):
            digest.update(text.encode("utf-8") + b"\0")
    return "sha256:" + digest.hexdigest()


def _parallel_source(splits: dict[str, tuple[list[str], list[str]]], cfg: dict[str, Any],
                     info: dict[str, Any]) -> Source:
    """A parallel Source; refuses an empty corpus and empty sentences (with their line number)."""
    for split, (sources, targets) in splits.items():
        if len(sources) != len(targets):
            raise DataError(f"{info['origin']}: {split} has {len(sources)} source and {len(targets)} "
                            f"target sentences: the sides must be aligned line by line")
        for side, texts in (("source", sources), ("target", targets)):
            empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
            if empty is not None:
                raise DataError(f"{info['origin']}: {split} {side} sentence {empty + 1} is empty "
                                f"(every line must hold a sentence)")
    if not splits["train"][0]:
        raise DataError(f"{info['origin']}: no sentence pairs to learn from (empty corpus)")
    info = {**info, "checksum": _pairs_checksum(*splits.values())}

    def arrays(split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if split not in splits:
            return None, None
        return np.array(splits[split][0], dtype=object), np.array(splits[split][1], dtype=object)

    (x_pool, y_pool), (x_test, y_test), (x_val, y_val) = arrays("train"), arrays("test"), arrays("val")
    return Source(x_pool, y_pool, x_test, y_test, "parallel", [int(cfg.get("max_len", 64))], [],
                  info, task="seq2seq", x_val=x_val, y_val=y_val,
                  preparer="archbench.data.parallel.prepare_pairs")


def _languages(cfg: dict[str, Any], valid: tuple[str, ...] | None = None) -> tuple[str, str]:
    source, target = str(cfg.get("source_lang", "de")), str(cfg.get("target_lang", "en"))
    for key, lang in (("source_lang", source), ("target_lang", target)):
        if valid is not None and lang not in valid:
            raise ConfigError(f"unknown data.{key} {lang!r}; valid: {', '.join(valid)}")
    if source == target:
        raise ConfigError(f"data.source_lang and data.target_lang are both {source!r}: pick two languages")
    return source, target


def _read_gz_lines(path: Path) -> list[str]:
    with utf8(path), gzip.open(path, "rt", encoding=TEXT_ENCODING) as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last sentence, it is not one
    return [line.strip() for line in lines]


def multi30k(cfg: dict[str, Any]) -> Source:
    """Multi30k task 1 from ``root``: ``{train,val,test_2016_flickr}.{en,de,fr}.gz`` (29,000 / 1,014
    / 1,000 aligned image captions), official splits kept. ``download: true`` fetches the missing
    files from the dataset's public repository (``url`` with ``{file}``); every file is MD5-checked."""
    source_lang, target_lang = _languages(cfg, MULTI30K_LANGUAGES)
    root = Path(str(cfg.get("root") or "")).expanduser()
    names = [f"{MULTI30K_SPLITS[s]}.{lang}.gz" for s in MULTI30K_SPLITS for lang in (source_lang, target_lang)]
    missing = [n for n in names if not (root / n).is_file()]
    if missing and cfg.get("download"):
        for name in missing:
            download(str(cfg["url"]).format(file=name), root / name, (cfg.get("md5") or {}).get(name))
        missing = []
    if missing:
        raise DataError(f"Multi30k not found: put {', '.join(missing)} (the dataset's data/task1/raw "
                        f"files) in {root.resolve()} (data.root=DIR, e.g. ../shared/datasets/multi30k), "
                        f"or set data.download=true")
    for name in names:
        check_md5(root / name, (cfg.get("md5") or {}).get(name), "(another version? set data.md5=null to accept it)")
    splits = {split: (_read_gz_lines(root / f"{stem}.{source_lang}.gz"),
                      _read_gz_lines(root / f"{stem}.{target_lang}.gz"))
              for split, stem in MULTI30K_SPLITS.items()}
    return _parallel_source(splits, cfg, {
        "origin": f"Multi30k task 1 ({root})", "source_lang": source_lang, "target_lang": target_lang,
        "test_split": "test_2016_flickr"})


def _read_tsv_pairs(path: Path) -> tuple[list[str], list[str]]:
    with utf8(path), path.open(encoding=TEXT_ENCODING, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    bad = next((i for i, row in enumerate(rows) if len(row) != 2), None)
    if bad is not None:
        raise DataError(f"{path}: line {bad + 1} has {len(rows[bad])} tab-separated fields, not 2 "
                        f"(source<TAB>target)")
    return [r[0].strip() for r in rows], [r[1].strip() for r in rows]


def _read_lines(path: Path) -> list[str]:
    with utf8(path):
        lines = path.read_text(encoding=TEXT_ENCODING).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def parallel_text(cfg: dict[str, Any]) -> Source:
    """Your own sentence pairs: ``tsv`` (source<TAB>target per line), or two aligned files
    ``source_file`` / ``target_file`` (line i translates line i); validation and test are seeded
    shares of them (``val_fraction``, ``test_fraction``)."""
    tsv, source_file, target_file = (cfg.get(k) for k in ("tsv", "source_file", "target_file"))
    if bool(tsv) == bool(source_file or target_file):
        raise ConfigError("parallel_text reads data.tsv=FILE (source<TAB>target) or "
                          "data.source_file=FILE data.target_file=FILE: give exactly one of the two")
    paths = [Path(str(p)).expanduser() for p in ([tsv] if tsv else [source_file, target_file]) if p]
    if not tsv and len(paths) != 2:
        raise ConfigError("parallel_text needs both data.source_file and data.target_file")
    for path in paths:
        if not path.is_file():
            raise DataError(f"no parallel text file {path.resolve()}: put your sentence pairs there "
                            f"or point data.{'tsv' if tsv else 'source_file/target_file'} at them")
    pairs = _read_tsv_pairs(paths[0]) if tsv else (_read_lines(paths[0]), _read_lines(paths[1]))
    source_lang, target_lang = _languages(cfg)
    return _parallel_source({"train": pairs}, cfg, {
        "origin": ", ".join(str(p) for p in paths), "source_lang": source_lang, "target_lang": target_lang})
