"""Sentence pairs for translation: per-language vocabularies of the training split, id encoding,
and the detokenizer that turns a hypothesis back into text for BLEU.

Tokenizer: the word tokenizer of ``archbench.data.tokens`` (lowercase by default, punctuation as
its own tokens, clitics split), for both languages. Vocabularies: ``<pad>`` 0, ``<unk>`` 1,
``<sos>`` 2, ``<eos>`` 3, then every training token seen ≥ ``min_freq`` times, most frequent first.
Sources are ``tokens`` (no specials), targets ``<sos> tokens <eos>``; each side keeps at most
``max_len`` tokens (the rest is cut, and counted in meta.json) and is right-padded with ``<pad>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from archbench.data.tokens import (
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    SOS,
    SOS_ID,
    TOKEN_PATTERN,
    UNK,
    UNK_ID,
    build_vocab,
    length_stats,
    tokenize,
)
from archbench.errors import ConfigError, DataError

SPECIALS = (PAD, UNK, SOS, EOS)
# no space before closing punctuation and clitics, none after opening brackets
_NO_SPACE_BEFORE = re.compile(r" (?=[.,!?;:%)\]}]|'(?:s|re|ve|ll|d|m)\b|n't\b)")
_NO_SPACE_AFTER = re.compile(r"(?<=[(\[{]) ")


def encode_side(token_lists: Sequence[Sequence[str]], vocab: Sequence[str], max_len: int,
                wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids ``(N, max_len [+ 2])`` and lengths; ``wrap`` adds ``<sos>``/``<eos>``."""
    lookup = {token: i for i, token in enumerate(vocab)}
    width = max_len + (2 if wrap else 0)
    ids = np.full((len(token_lists), width), PAD_ID, dtype=np.int64)
    lengths = np.empty(len(token_lists), dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        kept = [lookup.get(t, UNK_ID) for t in tokens[:max_len]] or [UNK_ID]
        if wrap:
            kept = [SOS_ID, *kept, EOS_ID]
        ids[row, : len(kept)] = kept
        lengths[row] = len(kept)
    return ids, lengths


def parallel_arrays(cfg: dict[str, Any], pairs: dict[str, tuple[list[str], list[str]]]):
    """``({split: {x, lengths, y, y_lengths}}, statistics and vocabularies for meta.json)``."""
    lowercase = bool(cfg.get("lowercase", True))
    max_len = int(cfg.get("max_len", 64))
    min_freq = int(cfg.get("min_freq", 2))
    if max_len < 1:
        raise ConfigError(f"data.max_len must be ≥ 1, got {max_len}")
    tokens = {split: ([tokenize(t, lowercase) for t in src], [tokenize(t, lowercase) for t in tgt])
              for split, (src, tgt) in pairs.items()}
    if not any(tokens["train"][0]) or not any(tokens["train"][1]):
        raise DataError("the training split has no tokens on one side: the corpus is empty")
    vocabs = [build_vocab(tokens["train"][side], min_freq, specials=SPECIALS) for side in (0, 1)]
    arrays: dict[str, dict[str, np.ndarray]] = {}
    stats: dict[str, Any] = {"lengths": {}, "unk_share": {}}
    for split, (src, tgt) in tokens.items():
        x, x_len = encode_side(src, vocabs[0], max_len, wrap=False)
        y, y_len = encode_side(tgt, vocabs[1], max_len, wrap=True)
        arrays[split] = {"x": x, "lengths": x_len, "y": y, "y_lengths": y_len}
        stats["lengths"][split] = {"source": length_stats(src, max_len), "target": length_stats(tgt, max_len)}
        stats["unk_share"][split] = {side: _unk_share(toks, vocabs[i])
                                     for i, (side, toks) in enumerate((("source", src), ("target", tgt)))}
    stats.update(source_vocab_size=len(vocabs[0]), target_vocab_size=len(vocabs[1]),
                 source_vocab=vocabs[0], target_vocab=vocabs[1],
                 tokenizer={"lowercase": lowercase, "max_len": max_len, "min_freq": min_freq,
                            "pattern": TOKEN_PATTERN.pattern, "specials": list(SPECIALS)})
    return arrays, stats


def _unk_share(token_lists: Sequence[Sequence[str]], vocab: Sequence[str]) -> float:
    known = set(vocab[len(SPECIALS):])
    total = sum(len(t) for t in token_lists) or 1
    return round(sum(tok not in known for t in token_lists for tok in t) / total, 4)


def ids_to_tokens(ids: Sequence[int], vocab: Sequence[str]) -> list[str]:
    """Target ids → tokens up to (without) the first ``<eos>``; ``<sos>`` and ``<pad>`` dropped."""
    tokens = []
    for i in ids:
        if i == EOS_ID:
            break
        if i not in (PAD_ID, SOS_ID):
            tokens.append(vocab[i])
    return tokens


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens → text: joined by spaces, then none before closing punctuation or clitics and none
    after opening brackets (``a dog 's ball .`` → ``a dog's ball.``)."""
    return _NO_SPACE_AFTER.sub("", _NO_SPACE_BEFORE.sub("", " ".join(tokens)))


def prepare_pairs(cfg: dict[str, Any], source: Any, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """The preparer of sentence pairs (``Source.preparer``): per-language vocabularies of the
    training split; the raw validation and test pairs go to ``pairs.json`` (BLEU's references)."""
    arrays, stats = parallel_arrays(cfg, {k: (list(s), list(t)) for k, (s, t) in splits.items()})
    stats.update(source_lang=source.info.get("source_lang"), target_lang=source.info.get("target_lang"))
    raw = {split: {"source": list(splits[split][0]), "reference": list(splits[split][1])} for split in ("val", "test")}
    return arrays, {"translation": stats}, {"pairs.json": json.dumps(raw, ensure_ascii=False)}
