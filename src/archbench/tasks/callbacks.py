"""Callbacks archbench adds to Lightning's own."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
import torch


class EpochCurves(pl.Callback):
    """One CSV row per epoch (train and validation metrics side by side) for ``dvc plots``.

    Lightning's CSVLogger writes one sparse row per logging call; DVC plots want one row per epoch.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        row = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith(("train/", "val/")):
                row[key] = round(float(value), 6)
        self.rows.append(row)
        self.write()

    def state_dict(self) -> dict:
        return {"rows": self.rows}  # so a resumed run keeps the epochs before the kill

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))

    def write(self) -> None:
        if not self.rows:
            return
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)


class RngStateInCheckpoint(pl.Callback):
    """Store torch's global RNG state in each checkpoint and restore it on resume, so a resumed
    run shuffles, drops out and augments exactly as the uninterrupted run would have."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
