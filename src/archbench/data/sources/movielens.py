"""MovieLens ratings (GroupLens): ml-100k's ``u.data``, ml-1m's ``ratings.dat``, or the
``ratings.csv`` of ml-latest-small / ml-25m, read from ``data.root`` or downloaded from GroupLens.

MovieLens may not be redistributed: archbench ships none of it. Users and items are renumbered
0..U-1 and 0..I-1 (the raw ids go to meta.json, titles to ``items.tsv``). The splits are the
recommendation protocols, done here because they are the dataset's, not the engine's:
- ``random`` (rating prediction): a seeded 80/10/10 split of the ratings (``test_fraction``,
  ``val_fraction``: shares of all ratings);
- ``leave_one_out`` (ranking, as in the NCF paper): each user's last interaction by timestamp is
  the test item, the one before it the validation item, the rest is training (ties: file order;
  users with fewer than 3 interactions stay whole in training).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from archbench.data.sources import Source, check_md5, download, extract_archive
from archbench.errors import ConfigError, DataError

# file name → (field separator, has a header row, titles file, its separator, its encoding)
FORMATS = {
    "u.data": ("\t", False, "u.item", "|", "latin-1"),
    "ratings.dat": ("::", False, "movies.dat", "::", "latin-1"),
    "ratings.csv": (",", True, "movies.csv", ",", "utf-8"),
}
SPLITS = {"rating": "random", "ranking": "leave_one_out"}
# GroupLens archives whose <variant>.zip unpacks to a <variant>/ folder holding one of FORMATS
VARIANTS = ("ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-32m", "ml-latest", "ml-latest-small")
PREPARER = "archbench.data.recommend.prepare_interactions"


def ratings_file(cfg: dict[str, Any]) -> Path:
    """The ratings file under ``root`` (or ``root/<variant>``), downloading the archive if asked."""
    root = Path(str(cfg.get("root") or "")).expanduser()
    variant = str(cfg.get("variant") or "ml-100k")
    for folder in (root, root / variant):
        for name in FORMATS:
            if (folder / name).is_file():
                return folder / name
    if cfg.get("download"):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown data.variant {variant!r}; GroupLens archives archbench reads: {', '.join(VARIANTS)}")
        archive = download(str(cfg["url"]), root / f"{variant}.zip")
        extract_archive(archive, root)
        return ratings_file({**cfg, "download": False})
    raise DataError(f"no MovieLens ratings in {root.resolve()}: put the unpacked GroupLens folder there "
                    f"(ml-100k/u.data, ml-1m/ratings.dat or ml-latest-small/ratings.csv), set data.root=DIR, "
                    f"or data.download=true (MovieLens may not be redistributed: archbench ships none)")


def pinned_md5(md5: str | dict[str, str] | None, file_name: str) -> str | None:
    """The MD5 a ratings file must have: ``data.md5`` maps file names to their release's MD5 (a file
    it does not name, another release's, is read unpinned); a plain string pins whichever file is read."""
    if isinstance(md5, dict):
        return md5.get(file_name) or None
    return str(md5) if md5 else None


def read_ratings(path: Path) -> np.ndarray:
    """``(N, 4)`` float64 rows of raw user id, item id, rating, timestamp, by pandas' C parser (5 M
    lines: 0.8 s and 0.4 GiB here, against the line loop's 10.5 s and 1.3 GiB); by the line loop
    when it cannot parse, to name the bad line."""
    import pandas as pd

    separator, header, *_ = FORMATS[path.name]
    source: Path | io.BytesIO = path
    if len(separator) > 1:  # ml-1m's '::': the C parser takes one-character separators only
        source = io.BytesIO(path.read_bytes().replace(separator.encode(), b"\t"))
    try:
        table = pd.read_csv(source, sep="\t" if len(separator) > 1 else separator, header=0 if header else None,
                            usecols=range(4), dtype=np.float64, encoding="latin-1").to_numpy()
    except (ValueError, pd.errors.ParserError):  # a text field, a short line, an empty file
        table = None
    if table is None or not len(table) or np.isnan(table).any():
        return _read_ratings_by_line(path)
    return table


def _read_ratings_by_line(path: Path) -> np.ndarray:
    """``read_ratings`` a line at a time, refusing the first malformed line by its number."""
    separator, header, *_ = FORMATS[path.name]
    rows = []
    with path.open(encoding="latin-1") as handle:
        if header:
            next(handle, None)
        for number, line in enumerate(handle, start=2 if header else 1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(separator)
            try:
                rows.append([float(v) for v in fields[:4]])
            except ValueError:
                raise DataError(f"{path}:{number}: not 'user{separator}item{separator}rating{separator}"
                                f"timestamp': {line.strip()[:60]!r}") from None
            if len(fields) < 4:
                raise DataError(f"{path}:{number}: expected 4 fields, got {len(fields)}")
    if not rows:
        raise DataError(f"{path} holds no ratings")
    return np.asarray(rows, dtype=np.float64)


def read_titles(path: Path) -> dict[int, str]:
    """Raw item id → title from the folder's titles file (empty when it is absent)."""
    _, _, name, separator, encoding = FORMATS[path.name]
    titles_path = path.with_name(name)
    if not titles_path.is_file():
        return {}
    titles = {}
    lines = titles_path.read_text(encoding=encoding, errors="replace").splitlines()
    for line in lines[1:] if path.name == "ratings.csv" else lines:
        if separator == "," and '"' in line:  # movies.csv quotes titles holding commas
            import csv

            fields = next(csv.reader([line]))
        else:
            fields = line.split(separator)
        if len(fields) >= 2 and fields[0].strip().isdigit():
            titles[int(fields[0])] = fields[1]
    return titles


def random_split(n: int, test_fraction: float, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Indices of a seeded random train/val/test split (fractions of all ``n``)."""
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ConfigError(f"data.test_fraction and data.val_fraction must be in (0, 1) with a sum < 1, "
                          f"got {test_fraction} and {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test : n_test + n_val]),
            "train": np.sort(order[n_test + n_val :])}


def leave_one_out(users: np.ndarray, timestamps: np.ndarray) -> dict[str, np.ndarray]:
    """Indices: each user's last interaction (test), the one before (val), the rest (train)."""
    order = np.lexsort((np.arange(len(users)), timestamps, users))  # by user, time, file order
    sorted_users = users[order]
    last = np.r_[sorted_users[1:] != sorted_users[:-1], True]
    counts = np.bincount(sorted_users)[sorted_users]
    test = order[last & (counts >= 3)]
    second = np.r_[last[1:], False] & (counts >= 3)
    val = order[second]
    held = np.zeros(len(users), dtype=bool)
    held[test], held[val] = True, True
    return {"train": np.flatnonzero(~held), "val": np.sort(val), "test": np.sort(test)}


def movielens(cfg: dict[str, Any]) -> Source:
    task = str(cfg.get("task") or "rating")
    if task not in SPLITS:
        raise ConfigError(f"MovieLens poses task rating or ranking, not {task!r}; valid: {', '.join(SPLITS)}")
    split = str(cfg.get("split") or SPLITS[task])
    if split not in ("random", "leave_one_out"):
        raise ConfigError(f"unknown data.split {split!r}; valid: random, leave_one_out")
    path = ratings_file(cfg)
    md5 = check_md5(path, pinned_md5(cfg.get("md5"), path.name),
                    "(another MovieLens release? set data.md5=null to read it unpinned)")
    table = read_ratings(path)
    user_ids, users = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    item_ids, items = np.unique(table[:, 1].astype(np.int64), return_inverse=True)
    pairs, ratings = np.stack([users, items], axis=1).astype(np.int64), table[:, 2].astype(np.float32)
    seed = int(cfg.get("seed", 42))
    index = (random_split(len(pairs), float(cfg.get("test_fraction", 0.1)), float(cfg.get("val_fraction", 0.1)), seed)
             if split == "random" else leave_one_out(users, table[:, 3]))
    titles = read_titles(path)
    info = {"file": path.name, "md5": md5, "ratings": len(pairs), "users": len(user_ids),
            "items": len(item_ids), "split": split, "titles": [titles.get(int(i), "") for i in item_ids],
            "user_ids": user_ids.tolist(), "item_ids": item_ids.tolist()}
    return Source(x_pool=pairs[index["train"]], y_pool=ratings[index["train"]], x_test=pairs[index["test"]],
                  y_test=ratings[index["test"]], x_val=pairs[index["val"]], y_val=ratings[index["val"]],
                  kind="interactions", input_shape=[2], class_names=[], info=info, task=task, preparer=PREPARER)
