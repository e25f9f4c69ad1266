"""Training metrics accumulated every step and handed to Lightning once per epoch.

A ``self.log`` per training step moves Lightning's result entry (metric states included) to the
device and updates it each time: on the small nets archbench compares that cost more than the
step itself (bench/throughput.py). Here each step only updates torchmetrics states; the epoch's
last batch logs the metric objects once, and Lightning computes (DDP-synced) and resets them.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric


def check_finite(module: pl.LightningModule, loss: torch.Tensor, what: str = "training loss") -> None:
    """Stop a diverged run with one line (``NonFiniteLossError``: the run is marked FAILED)."""
    if not torch.isfinite(loss):
        from archbench.errors import NonFiniteLossError

        raise NonFiniteLossError(f"non-finite {what} ({loss.item()}) at epoch {module.current_epoch}, step "
                                 f"{module.global_step}: lower optimizer.lr (now {module.optimizer_cfg.get('lr')})")


def running_mean() -> MeanMetric:
    """A sample-weighted mean. (Not ``nan_strategy="disable"``: torchmetrics 1.9 then drops the
    weights and averages per batch, which tests/test_speed.py caught.)"""
    return MeanMetric(nan_strategy="error")


class TrainEpochMetrics(nn.ModuleDict):
    """Named training metrics, updated per step and logged as ``train/<name>`` per epoch."""

    def __init__(self, prog_bar: Iterable[str] = ("loss",), **metrics: Metric) -> None:
        super().__init__(metrics)
        self.prog_bar = set(prog_bar)

    def update_mean(self, name: str, value: torch.Tensor, weight: int) -> None:
        self[name].update(value.detach(), weight)

    def log_if_epoch_ends(self, module: pl.LightningModule) -> None:
        """Call at the end of ``training_step``: logs on the epoch's last batch only (every rank
        reaches it on the same step, so the DDP sync inside ``compute`` lines up)."""
        trainer = module._trainer
        if trainer is None or not trainer.is_last_batch:
            return
        for name, metric in self.items():
            if metric.update_count:
                module.log(f"train/{name}", metric, on_step=False, on_epoch=True,
                           prog_bar=name in self.prog_bar)
