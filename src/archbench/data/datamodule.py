"""One in-memory LightningDataModule for every prepared dataset.

Batches are tensor slices (``x[idx]``) fetched through ``__getitems__``: no per-sample Python
collate, and Lightning can still swap in a ``DistributedSampler`` under DDP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

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


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch is already stacked by ``__getitems__``."""
    return batch


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images → (N, H, C·W) sequences: one image row per time step."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


class TensorDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        layout: str = "default",
        verify_checksum: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be ≥ 1, got {batch_size} / {eval_batch_size}")
        if layout not in ("default", "rows"):
            raise ConfigError(f"unknown data.layout {layout!r}; valid: default, rows")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.layout = layout
        self.verify_checksum = verify_checksum
        self.meta: Meta | None = None
        self.splits: dict[str, TensorBatchDataset] = {}

    def load(self) -> Meta:
        """Read the prepared tensors once (idempotent); returns the metadata."""
        if self.meta is None:
            meta, raw = load_all(self.data_dir, verify=self.verify_checksum)
            for split, tensors in raw.items():
                x = tensors["x"]
                if self.layout == "rows":
                    if x.dim() != 4:
                        raise ConfigError(f"data.layout=rows needs images; {meta.name} is {meta.kind}")
                    x = as_rows(x)
                self.splits[split] = TensorBatchDataset(x, tensors["y"])
            self.meta = meta
        return self.meta

    @property
    def input_shape(self) -> list[int]:
        return list(self.splits["train"].x.shape[1:]) if self.splits else list(self.load().input_shape)

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _loader(self, split: str, train: bool) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            # a lone last sample would break batch norm in training mode
            drop_last=train and len(self.splits[split]) % self.batch_size == 1,
            collate_fn=keep_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def example_batch(self, n: int = 4) -> dict[str, Any]:
        return {"x": self.splits["val"].x[:n], "y": self.splits["val"].y[:n]}
