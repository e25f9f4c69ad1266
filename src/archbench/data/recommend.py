"""Interactions for recommenders: the preparer, negative sampling and the datamodule.

Rating prediction (``task: rating``): every split is ``(user, item)`` pairs with their ratings.
Ranking (``task: ranking``, implicit feedback: every rating is a positive interaction): training is
the positive pairs, each batch joined by ``data.negatives_train`` fresh negatives per positive;
validation and test are one row per user ``[user, held-out item, 99 negatives]`` (the NCF paper's
protocol), the negatives drawn once, seeded, among items the user never interacted with in any split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from archbench.data.datamodule import InMemoryDataModule, TensorBatchDataset
from archbench.errors import ConfigError, DataError


class PairSet:
    """Membership of (user, item) pairs, as sorted ``user·num_items + item`` keys."""

    def __init__(self, pairs: np.ndarray, num_items: int) -> None:
        self.num_items = int(num_items)
        self.keys = np.unique(pairs[:, 0].astype(np.int64) * self.num_items + pairs[:, 1])

    def count(self, user: int) -> int:
        """How many items ``user`` has a pair with."""
        low, high = np.searchsorted(self.keys, [user * self.num_items, (user + 1) * self.num_items])
        return int(high - low)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.num_items + items
        where = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return self.keys[where] == keys


def sample_negatives(users: np.ndarray, count: int, known: PairSet, rng: np.random.Generator) -> np.ndarray:
    """``(len(users), count)`` items drawn uniformly among those each user has no pair with in
    ``known`` (redrawn until none collides: rejection sampling)."""
    items = rng.integers(0, known.num_items, size=(len(users), count))
    rows = np.repeat(users, count).reshape(len(users), count)
    for _ in range(1000):
        clash = known.contains(rows, items)
        if not clash.any():
            return items
        items[clash] = rng.integers(0, known.num_items, size=int(clash.sum()))
    raise DataError("cannot draw negatives: some user has interacted with almost every item")


def _candidates(pairs: np.ndarray, known: PairSet, count: int, rng: np.random.Generator) -> np.ndarray:
    """Rows ``[user, held-out item, count distinct negatives]`` (items the user has no pair with;
    rejection sampling, so the cost grows with ``count``, not with the catalogue)."""
    rows = np.empty((len(pairs), 2 + count), dtype=np.int64)
    for row, (user, item) in enumerate(pairs):
        unseen = known.num_items - known.count(int(user))
        if unseen < count:
            raise DataError(f"user {user} has interacted with all but {unseen} items: cannot draw "
                            f"{count} negatives (lower data.negatives_eval)")
        chosen: dict[int, None] = {}
        while len(chosen) < count:
            draw = rng.integers(0, known.num_items, size=2 * count)
            chosen.update(dict.fromkeys(draw[~known.contains(np.full(len(draw), user), draw)].tolist()))
        rows[row] = [user, item, *list(chosen)[:count]]
    return rows


def prepare_interactions(cfg: dict[str, Any], source, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Arrays of each split (see the module docstring), ids and rating range in meta, titles in
    ``items.tsv``."""
    info = source.info
    num_users, num_items = len(info["user_ids"]), len(info["item_ids"])
    train_ratings = splits["train"][1]
    extra = {"num_users": num_users, "num_items": num_items,
             "user_ids": info.pop("user_ids"), "item_ids": info.pop("item_ids"),
             "rating": {"mean": float(train_ratings.mean()), "min": float(min(s[1].min() for s in splits.values())),
                        "max": float(max(s[1].max() for s in splits.values()))}}
    titles = info.pop("titles")
    files = {"items.tsv": "index\titem_id\ttitle\n" + "\n".join(
        f"{i}\t{raw}\t{title}" for i, (raw, title) in enumerate(zip(extra["item_ids"], titles, strict=True)))}
    if source.task == "rating":
        arrays = {split: {"x": x.astype(np.int64), "y": y.astype(np.float32)} for split, (x, y) in splits.items()}
        return arrays, extra, files
    count = int(cfg.get("negatives_eval", 99))
    if count < 1:
        raise ConfigError(f"data.negatives_eval must be ≥ 1, got {count}")
    known = PairSet(np.concatenate([x for x, _ in splits.values()]), num_items)
    rng = np.random.default_rng(int(cfg.get("seed", 42)))
    train = splits["train"][0].astype(np.int64)
    arrays = {"train": {"x": train, "y": np.ones(len(train), dtype=np.float32)}}
    for split in ("val", "test"):
        rows = _candidates(splits[split][0], known, count, rng)
        arrays[split] = {"x": rows, "y": np.zeros(len(rows), dtype=np.int64)}  # the positive: candidate 0
    return arrays, {**extra, "negatives_eval": count}, files


class ImplicitFeedback(Dataset):
    """Training positives; each fetched batch gains ``negatives`` fresh negatives per positive
    (never a training positive of that user), labels 1 and 0."""

    def __init__(self, positives: torch.Tensor, num_items: int, negatives: int, seed: int) -> None:
        if negatives < 1:
            raise ConfigError(f"data.negatives_train must be ≥ 1, got {negatives}")
        self.positives, self.negatives = positives, int(negatives)
        self.known = PairSet(positives.numpy(), num_items)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.positives)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        positives = self.positives[torch.as_tensor(indices, dtype=torch.long)]
        users = positives[:, 0].numpy()
        items = sample_negatives(users, self.negatives, self.known, self.rng)
        negatives = np.stack([np.repeat(users, self.negatives), items.reshape(-1)], axis=1)
        x = torch.cat([positives, torch.from_numpy(negatives)])
        y = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
        return x, y


class InteractionsDataModule(InMemoryDataModule):
    """``(pairs, ratings)`` batches for rating prediction; for ranking, positives plus fresh
    negatives in training and ``[user, candidates…]`` rows in evaluation."""

    def __init__(self, data_dir, batch_size: int = 256, eval_batch_size: int = 4096, negatives: int = 4,
                 verify_checksum: bool = True, seed: int = 0) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, verify_checksum, seed)
        self.negatives = int(negatives)

    def build_splits(self, meta, raw) -> dict[str, Dataset]:
        splits = {split: TensorBatchDataset(t["x"], t["y"]) for split, t in raw.items()}
        if meta.task == "ranking":
            rank = self._world()[0]
            splits["train"] = ImplicitFeedback(raw["train"]["x"], int(meta.extra["num_items"]), self.negatives,
                                               self.seed * 1_000_003 + rank)
        return splits

    @property
    def input_shape(self) -> list[int]:
        return [2]

    def example_batch(self, n: int = 4) -> dict[str, torch.Tensor]:
        x, y = self.splits["train"].__getitems__(list(range(n)))
        return {"x": x[:n], "y": y[:n]}
