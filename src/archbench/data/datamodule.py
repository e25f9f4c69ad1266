"""One in-memory LightningDataModule for every prepared dataset.

Batches are tensor slices (``x[idx]``) fetched through ``__getitems__``: no per-sample Python
collate, and Lightning can still swap in a ``DistributedSampler`` under DDP.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from archbench.data.store import Meta, load_all
from archbench.errors import ConfigError


class TensorBatchDataset(Dataset):
    """Tensors indexed a whole batch at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.x[index], self.y[index]


class LengthBucketSampler(Sampler[list[int]]):
    """Training batches of texts of similar length: each epoch shuffles the split (seeded by seed
    and epoch), sorts each chunk of ``bucket`` batches by length, cuts it into batches and shuffles
    the batch order — so a batch is cut after its own longest text instead of a random one's
    (the padding-aware bucketing of torchtext's BucketIterator; written here because torch has none)."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, bucket: int, seed: int) -> None:
        self.lengths, self.batch_size, self.bucket, self.seed = lengths, batch_size, bucket, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        batches = []
        for chunk in order.split(self.batch_size * self.bucket):
            ranked = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches += list(ranked.split(self.batch_size))
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i].tolist()


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch is already stacked by ``__getitems__``."""
    return batch


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images → channels-first sequences (N, C·W, H): one image row per time step."""
    n, c, h, w = x.shape
    return x.permute(0, 1, 3, 2).reshape(n, c * w, h)


class InMemoryDataModule(pl.LightningDataModule):
    """Loads a prepared directory once (checksum-verified) and serves its splits as tensor batches.

    Subclasses turn the raw split tensors into datasets in ``build_splits``.
    """

    shuffle_train = True

    def __init__(self, data_dir: str | Path, batch_size: int, eval_batch_size: int,
                 verify_checksum: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be ≥ 1, got {batch_size} / {eval_batch_size}")
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.verify_checksum = verify_checksum
        self.meta: Meta | None = None
        self.splits: dict[str, Dataset] = {}

    def build_splits(self, meta: Meta, raw: dict[str, dict[str, torch.Tensor]]) -> dict[str, Dataset]:
        raise NotImplementedError

    def load(self) -> Meta:
        """Read the prepared tensors once (idempotent); returns the metadata."""
        if self.meta is None:
            meta, raw = load_all(self.data_dir, verify=self.verify_checksum)
            self.splits = self.build_splits(meta, raw)
            self.meta = meta
        return self.meta

    @property
    def input_shape(self) -> list[int]:
        """Shape of one input as the net sees it."""
        self.load()
        return list(self.splits["val"].__getitems__([0])[0].shape[1:])

    def setup(self, stage: str | None = None) -> None:
        self.load()
        world = self._world()
        if world[1] > 1 and self.batch_size % world[1]:
            raise ConfigError(f"data.batch_size={self.batch_size} is the global batch: it must divide "
                              f"evenly across {world[1]} processes")

    def _world(self) -> tuple[int, int]:
        """(global rank, world size) of the trainer using this datamodule, (0, 1) outside DDP."""
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def example_batch(self, n: int = 4) -> dict[str, torch.Tensor]:
        x, y = self.splits["val"].__getitems__(list(range(n)))
        return {"x": x, "y": y}

    def _loader(self, split: str, train: bool) -> DataLoader:
        """Under DDP ``data.batch_size`` stays the global batch (each of N processes takes 1/N of
        it, the learning rate is untouched); training shards are shuffled per epoch, evaluation
        shards are disjoint and unpadded so every sample is counted exactly once."""
        from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
        from torch.utils.data import DistributedSampler

        dataset = self.splits[split]
        rank, world = self._world()
        size = self.batch_size // world if train else self.eval_batch_size
        sampler = None
        if world > 1:
            sampler = (DistributedSampler(dataset, world, rank, shuffle=self.shuffle_train,
                                          seed=self.seed) if train else UnrepeatedDistributedSampler(dataset, world, rank, shuffle=False))
        return DataLoader(
            dataset, batch_size=size, sampler=sampler,
            shuffle=train and self.shuffle_train and sampler is None,
            # a lone last sample would break batch norm in training mode
            drop_last=train and len(dataset) % size == 1,
            collate_fn=keep_batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class TensorDataModule(InMemoryDataModule):
    """Images, sequences and tables: ``(x, y)`` batches; ``layout='rows'`` reads images row by row."""

    def __init__(self, data_dir: str | Path, batch_size: int = 128, eval_batch_size: int = 1024,
                 layout: str = "default", verify_checksum: bool = True, seed: int = 0,
                 train_fraction: float = 1.0, bucket_batches: int = 0) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, verify_checksum, seed)
        if bucket_batches < 0:
            raise ConfigError(f"data.bucket_batches must be ≥ 0 (0: off), got {bucket_batches}")
        self.bucket_batches = bucket_batches
        self.train_lengths: torch.Tensor | None = None
        if layout not in ("default", "rows"):
            raise ConfigError(f"unknown data.layout {layout!r}; valid: default, rows")
        if not 0 < train_fraction <= 1:
            raise ConfigError(f"data.train_fraction must be in (0, 1], got {train_fraction}")
        self.layout, self.train_fraction = layout, train_fraction

    def build_splits(self, meta: Meta, raw: dict[str, dict[str, torch.Tensor]]) -> dict[str, Dataset]:
        splits = {}
        for split, tensors in raw.items():
            x = tensors["x"]
            if self.layout == "rows":
                if x.dim() != 4:
                    raise ConfigError(f"data.layout=rows needs images; {meta.name} is {meta.kind}")
                x = as_rows(x)
            y = tensors["y"]
            lengths = tensors.get("lengths")
            if split == "train" and self.train_fraction < 1:
                keep = training_subset(len(y), self.train_fraction, self.seed)
                x, y = x[keep], y[keep]
                lengths = lengths[keep] if lengths is not None else None
            if split == "train":
                self.train_lengths = lengths
            splits[split] = TensorBatchDataset(x, y)
        return splits

    def train_dataloader(self) -> DataLoader:
        """Length-bucketed batches for texts (``data.bucket_batches`` > 0) on one process; under
        DDP, or for data without lengths, the shuffled loader of every other dataset."""
        if not self.bucket_batches or self.train_lengths is None or self._world()[1] > 1:
            return super().train_dataloader()
        sampler = LengthBucketSampler(self.train_lengths, self.batch_size, self.bucket_batches, self.seed)
        return DataLoader(self.splits["train"], batch_sampler=sampler, collate_fn=keep_batch)


def training_subset(size: int, fraction: float, seed: int) -> torch.Tensor:
    """Indices (in split order) of a seeded random ``fraction`` of a training split; with one seed
    the subsets are nested (10 % ⊂ 25 % ⊂ 50 %), so a data-efficiency curve adds data, not luck."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[:max(1, round(fraction * size))].sort().values


class RandomWindows(Dataset):
    """``length`` random windows of ``block_size + 1`` characters from one long id tensor
    (input = first ``block_size``, target = the same shifted by one)."""

    def __init__(self, ids: torch.Tensor, block_size: int, length: int) -> None:
        if len(ids) <= block_size + 1:
            raise ConfigError(f"data.block_size={block_size} is longer than the text ({len(ids)} chars)")
        self.ids, self.block_size, self.length = ids, block_size, length

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.ids) - self.block_size - 1, (len(indices),))
        windows = self.ids[starts.unsqueeze(1) + torch.arange(self.block_size + 1)]
        return windows[:, :-1], windows[:, 1:]


class ContiguousWindows(Dataset):
    """Every non-overlapping window of a split, in order: evaluation sees each character once."""

    def __init__(self, ids: torch.Tensor, block_size: int) -> None:
        n = (len(ids) - 1) // block_size
        self.x = ids[: n * block_size].view(n, block_size)
        self.y = ids[1 : n * block_size + 1].view(n, block_size)

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.x[index], self.y[index]


class TextDataModule(InMemoryDataModule):
    """Character-level language modelling: random training windows, contiguous evaluation windows."""

    shuffle_train = False  # the windows are already random

    def __init__(self, data_dir: str | Path, block_size: int = 64, batch_size: int = 12,
                 eval_batch_size: int = 256, steps_per_epoch: int = 200,
                 verify_checksum: bool = True, seed: int = 0) -> None:
        super().__init__(data_dir, batch_size, eval_batch_size, verify_checksum, seed)
        for key, value in (("block_size", block_size), ("steps_per_epoch", steps_per_epoch)):
            if value < 1:
                raise ConfigError(f"data.{key} must be ≥ 1, got {value}")
        self.block_size, self.steps_per_epoch = block_size, steps_per_epoch

    def build_splits(self, meta: Meta, raw: dict[str, dict[str, torch.Tensor]]) -> dict[str, Dataset]:
        return {
            "train": RandomWindows(raw["train"]["x"], self.block_size,
                                   self.steps_per_epoch * self.batch_size),
            "val": ContiguousWindows(raw["val"]["x"], self.block_size),
            "test": ContiguousWindows(raw["test"]["x"], self.block_size),
        }
