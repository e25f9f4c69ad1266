"""Character corpora: Python's own help text (embedded) or any UTF-8 text file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import TEXT_ENCODING, Source, download, utf8
from archbench.errors import ConfigError, DataError


def characters(text: str, info: dict[str, Any], block_size: int) -> Source:
    """The corpus as character ids; the vocabulary is every character in it, sorted."""
    vocab = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    ids = np.fromiter((lookup[ch] for ch in text), dtype=np.int64, count=len(text))
    info = {**info, "checksum": "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "characters": len(text)}
    return Source(ids, ids, None, None, "text", [block_size], vocab, info, task="language_model")


def pydoc_text(cfg: dict[str, Any]) -> Source:
    """Python's own pydoc_data.topics (~465 kB of English), no download."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    return characters(text, {"origin": "pydoc_data.topics (Python's own help text)"},
                      int(cfg.get("block_size", 64)))


def text_file(cfg: dict[str, Any]) -> Source:
    """A UTF-8 text file at ``path`` (``download: true`` fetches ``url`` there first)."""
    if not cfg.get("path"):
        raise ConfigError(f"data={cfg.get('name')} needs data.path=FILE (a UTF-8 text file: the corpus)")
    path = Path(str(cfg["path"])).expanduser()
    if not path.is_file():
        if cfg.get("download") and cfg.get("url"):
            download(str(cfg["url"]), path)
        else:
            fetch = f", or data.download=true to fetch {cfg['url']}" if cfg.get("url") else ""
            raise DataError(f"text file not found: {path.resolve()}; put the corpus there or set data.path=FILE{fetch}")
    with utf8(path):
        text = path.read_text(encoding=TEXT_ENCODING)
    if not text.strip():
        raise DataError(f"{path} holds no text")
    return characters(text, {"origin": str(path.resolve())},
                      int(cfg.get("block_size", 64)))
