"""Training metrics accumulated every step and handed to Lightning once per epoch.

A ``self.log`` per training step moves Lightning's result entry (metric states included) to the
device and updates it each time: on the small nets archbench compares that cost more than the
step itself (bench/throughput.py). Here each step only adds to a running sum per metric (a
tensor, and its weight as a number: a tensor add, where a torchmetrics ``update`` costs ~20-40 µs of
Python per call, measured); the epoch's last batch hands the sums to the torchmetrics objects once
and logs them, and Lightning computes (DDP-synced) and resets them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

# batches whose scores wait to be turned into hits together (bounded memory: 32 batches of scores);
# per batch, an arg-max, a comparison and two adds cost ~30 µs of a 1.4 ms MNIST-1D MLP step
SCORES_BUFFERED = 32


def check_finite(module: pl.LightningModule, loss: torch.Tensor, what: str = "training loss") -> float:
    """Stop a diverged run with one line (``NonFiniteLossError``: the run is marked FAILED); returns
    the loss as a number, which ``TrainEpochMetrics.update_mean`` sums without a tensor op."""
    value = loss.item()  # one read; torch.isfinite's tensor and its bool() cost ~25 µs a step more
    if not math.isfinite(value):
        from archbench.errors import NonFiniteLossError

        raise NonFiniteLossError(f"non-finite {what} ({value}) at epoch {module.current_epoch}, step "
                                 f"{module.global_step}: lower optimizer.lr (now {module.optimizer_cfg.get('lr')})")
    return value


def running_mean() -> MeanMetric:
    """A sample-weighted mean. (Not ``nan_strategy="disable"``: torchmetrics 1.9 then drops the
    weights and averages per batch, which tests/test_speed.py caught.)"""
    return MeanMetric(nan_strategy="error")


class TrainEpochMetrics(nn.ModuleDict):
    """Named sample-weighted training means (``running_mean()`` metrics), accumulated per step and
    logged as ``train/<name>`` per epoch."""

    def __init__(self, prog_bar: Iterable[str] = ("loss",), **metrics: MeanMetric) -> None:
        super().__init__(metrics)
        self.prog_bar = set(prog_bar)
        self._pending: dict[str, tuple[torch.Tensor, float]] = {}  # name -> (sum, weight) this epoch
        self._scores: dict[str, tuple[list[torch.Tensor], list[torch.Tensor], Callable]] = {}  # not yet scored

    def update_mean(self, name: str, value: torch.Tensor | float, weight: float) -> None:
        """Adds ``value`` (a batch mean, e.g. the loss: a tensor, or the number ``check_finite``
        returned) with ``weight`` (its sample count). A number is summed as a float32 numpy scalar:
        bit for bit the tensor sum, at ~0.5 µs where the tensor multiply and add cost ~5 µs."""
        if isinstance(value, torch.Tensor):
            self._add(name, value.detach() * weight, weight)
        else:
            self._add(name, np.float32(value) * np.float32(weight), weight)

    def update_hits(self, name: str, hits: torch.Tensor) -> None:
        """Adds a batch's per-example hits (bools): their running mean is the micro accuracy."""
        self._add(name, hits.sum(), hits.numel())

    def update_hits_from_scores(self, name: str, scores: torch.Tensor, target: torch.Tensor,
                                predict: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Like ``update_hits(name, predict(scores) == target)``, batched: the scores wait until
        ``SCORES_BUFFERED`` batches (or the epoch's last) are in, then are scored in one go."""
        scores_list, targets, _ = self._scores.setdefault(name, ([], [], predict))
        scores_list.append(scores.detach())
        targets.append(target)
        if len(scores_list) >= SCORES_BUFFERED:
            self._score(name)

    def _score(self, name: str) -> None:
        scores, targets, predict = self._scores.pop(name)
        self.update_hits(name, predict(torch.cat(scores)) == torch.cat(targets))

    def _add(self, name: str, total: torch.Tensor, weight: float) -> None:
        if name not in self:
            raise KeyError(f"no training metric {name!r}; known: {', '.join(self.keys())}")
        sums, weights = self._pending.get(name, (0, 0))
        self._pending[name] = (total + sums, weight + weights)

    def log_if_epoch_ends(self, module: pl.LightningModule) -> None:
        """Call at the end of ``training_step``: on the epoch's last batch only (every rank reaches
        it on the same step, so the DDP sync inside ``compute`` lines up), the epoch's sums go to
        the torchmetrics objects in one update each and are logged."""
        trainer = module._trainer
        if trainer is None or not trainer.is_last_batch:
            return
        for name in list(self._scores):
            self._score(name)
        for name, (total, weight) in self._pending.items():
            metric = self[name]
            metric.update(total / weight, weight)  # int hits / count: true division
            module.log(f"train/{name}", metric, on_step=False, on_epoch=True,
                       prog_bar=name in self.prog_bar)
        self._pending.clear()
