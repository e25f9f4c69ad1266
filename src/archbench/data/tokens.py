"""Word-level text for classification: tokenizer, training-split vocabulary, id encoding.

Tokenizer (documented in conf/data/sst2.yaml): optional lowercasing, HTML line breaks (IMDB's
``<br />``) become spaces, then a regular expression keeps, in order of preference,
- a word followed by the negation "n't" as two tokens ("don't" → "do", "n't"; "can't" → "ca",
  "n't", the Penn Treebank convention SST-2 already uses, so "does n't" tokenizes the same),
- the clitics 's 're 've 'll 'd 'm as their own tokens ("it's" → "it", "'s"),
- words of letters and digits, hyphenated compounds kept whole ("well-made"),
- every other non-space character as a one-character token (punctuation: "!", "?", "...").

The vocabulary counts the training split only: ``<pad>`` (id 0), ``<unk>`` (id 1), then every
token seen at least ``min_freq`` times, most frequent first (ties alphabetical), at most
``max_size`` entries in all. Sequences are cut to ``max_len`` tokens (``truncation: end`` keeps
the beginning, ``start`` the end) and right-padded with ``<pad>``; a text with no token at all
becomes one ``<unk>`` so every example has length ≥ 1.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from archbench.errors import ConfigError, DataError

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
PAD_ID, UNK_ID, SOS_ID, EOS_ID = 0, 1, 2, 3  # <sos>/<eos> only in sequence-to-sequence vocabularies
TRUNCATIONS = ("end", "start")
_WORD = r"[^\W_]+"
TOKEN_PATTERN = re.compile(
    rf"{_WORD}(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|{_WORD}(?:-{_WORD})*|[^\w\s]|_+")
_BREAKS = re.compile(r"<br\s*/?>", re.IGNORECASE)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The text's tokens (see the module docstring for the rules)."""
    text = _BREAKS.sub(" ", text)
    return TOKEN_PATTERN.findall(text.lower() if lowercase else text)


def build_vocab(token_lists: Iterable[Sequence[str]], min_freq: int = 1,
                max_size: int | None = None, specials: Sequence[str] = (PAD, UNK)) -> list[str]:
    """``[*specials, ...]`` (``<pad>``, ``<unk>``, for translation also ``<sos>``, ``<eos>``):
    tokens with ≥ ``min_freq`` occurrences, most frequent first, ties alphabetical."""
    if min_freq < 1:
        raise ConfigError(f"data.min_freq must be ≥ 1, got {min_freq}")
    if max_size is not None and max_size < len(specials) + 1:
        raise ConfigError(f"data.max_size must be ≥ {len(specials) + 1} ({', '.join(specials)} and "
                          f"one word), got {max_size}")
    counts = Counter(token for tokens in token_lists for token in tokens)
    ranked = sorted((t for t, n in counts.items() if n >= min_freq and t not in specials),
                    key=lambda t: (-counts[t], t))
    if max_size is not None:
        ranked = ranked[: max_size - len(specials)]
    return [*specials, *ranked]


def encode(token_lists: Sequence[Sequence[str]], vocab: Sequence[str], max_len: int,
           truncation: str = "end") -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids ``(N, max_len)`` (int64) and lengths ``(N,)``; unknown tokens → ``<unk>``."""
    if max_len < 1:
        raise ConfigError(f"data.max_len must be ≥ 1, got {max_len}")
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"unknown data.truncation {truncation!r}; valid: {', '.join(TRUNCATIONS)}")
    lookup = {token: i for i, token in enumerate(vocab)}
    ids = np.full((len(token_lists), max_len), PAD_ID, dtype=np.int64)
    lengths = np.empty(len(token_lists), dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        kept = (tokens[:max_len] if truncation == "end" else tokens[-max_len:]) or [UNK]
        ids[row, : len(kept)] = [lookup.get(token, UNK_ID) for token in kept]
        lengths[row] = len(kept)
    return ids, lengths


def length_stats(token_lists: Sequence[Sequence[str]], max_len: int) -> dict[str, Any]:
    """Token counts before truncation: mean, percentiles, max and the share cut by ``max_len``."""
    counts = np.array([len(t) for t in token_lists], dtype=np.int64)
    return {"mean": round(float(counts.mean()), 2), "p50": int(np.percentile(counts, 50)),
            "p95": int(np.percentile(counts, 95)), "max": int(counts.max()),
            "truncated_share": round(float((counts > max_len).mean()), 4),
            "empty": int((counts == 0).sum())}


def token_arrays(cfg: dict[str, Any], texts: dict[str, Sequence[str]]) -> tuple[dict, list[str], dict]:
    """Encode each split's texts with a vocabulary built from ``texts['train']`` alone.

    Returns ``({split: {"x": ids, "lengths": lengths}}, vocab, statistics for meta.json)``.
    """
    lowercase = bool(cfg.get("lowercase", True))
    max_len = int(cfg.get("max_len", 64))
    tokens = {split: [tokenize(t, lowercase) for t in split_texts] for split, split_texts in texts.items()}
    if not any(tokens["train"]):
        raise DataError("the training split has no tokens: the corpus is empty")
    max_size = cfg.get("max_size")
    vocab = build_vocab(tokens["train"], int(cfg.get("min_freq", 1)),
                        int(max_size) if max_size is not None else None)
    arrays, stats = {}, {"vocab_size": len(vocab), "lengths": {}, "unk_share": {}}
    known = set(vocab[2:])
    for split, split_tokens in tokens.items():
        ids, lengths = encode(split_tokens, vocab, max_len, str(cfg.get("truncation", "end")))
        arrays[split] = {"x": ids, "lengths": lengths}
        stats["lengths"][split] = length_stats(split_tokens, max_len)
        total = sum(len(t) for t in split_tokens) or 1
        stats["unk_share"][split] = round(sum(tok not in known for t in split_tokens for tok in t) / total, 4)
    stats["tokenizer"] = {"lowercase": lowercase, "max_len": max_len,
                          "truncation": str(cfg.get("truncation", "end")),
                          "min_freq": int(cfg.get("min_freq", 1)), "max_size": max_size,
                          "pattern": TOKEN_PATTERN.pattern}
    return arrays, vocab, stats


def prepare_texts(cfg: dict[str, Any], source: Any, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """The preparer of labelled texts (``Source.preparer``): each split encoded with the training
    split's vocabulary. Returns the arrays, ``{"text": statistics}`` for meta.json and the side
    files (vocab.json; test_texts.json for the report's misclassified examples)."""
    texts = {split: list(x) for split, (x, _) in splits.items()}
    encoded, vocab, stats = token_arrays(cfg, texts)
    arrays = {split: {**encoded[split], "y": splits[split][1]} for split in encoded}
    stats["vocab_sha256"] = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()
    files = {"vocab.json": json.dumps(vocab, ensure_ascii=False),
             "test_texts.json": json.dumps([" ".join(t.split()) for t in texts["test"]], ensure_ascii=False)}
    return arrays, {"text": stats}, files
