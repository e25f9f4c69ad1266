"""Training metrics accumulated every step and handed to Lightning once per epoch.

A ``self.log`` per training step moves Lightning's result entry to the device and updates it each
time: on the small nets archbench compares that cost more than the step itself
(bench/throughput.py). Here each step only adds to a running sum per metric (a tensor, and its
weight as a number: a tensor add, where a torchmetrics ``update`` costs ~20-40 µs of Python per
call, measured); the epoch's last batch logs each mean once as a tensor with its sample count as
the batch size, and Lightning sums value and count over DDP ranks (``sync_dist``) and resets them.
(Not a torchmetrics object per name: logging one makes Lightning move its states too, 0.1-0.35 ms
more an epoch per metric, measured on the MNIST-1D MLP.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pytorch_lightning as pl
import torch

# batches whose scores wait to be turned into hits together (bounded memory: 32 batches of scores);
# per batch, an arg-max, a comparison and two adds cost ~30 µs of a 1.4 ms MNIST-1D MLP step
SCORES_BUFFERED = 32
# (value, weight) pairs of a number-valued mean kept before they are summed (bounded memory)
NUMBERS_BUFFERED = 1024


def check_finite(module: pl.LightningModule, loss: torch.Tensor, what: str = "training loss") -> float:
    """Stop a diverged run with one line (``NonFiniteLossError``: the run is marked FAILED); returns
    the loss as a number, which ``TrainEpochMetrics.update_mean`` sums without a tensor op."""
    value = loss.item()  # one read; torch.isfinite's tensor and its bool() cost ~25 µs a step more
    if not math.isfinite(value):
        from archbench.errors import NonFiniteLossError

        raise NonFiniteLossError(f"non-finite {what} ({value}) at epoch {module.current_epoch}, step "
                                 f"{module.global_step}: lower optimizer.lr (now {module.optimizer_cfg.get('lr')})")
    return value


class TrainEpochMetrics:
    """Named sample-weighted training means, accumulated per step and logged as ``train/<name>``
    once per epoch."""

    def __init__(self, *names: str, prog_bar: Iterable[str] = ("loss",)) -> None:
        self.names = names
        self.prog_bar = set(prog_bar)
        # name -> (sum, weight) this epoch; the sum a tensor, or a float32 numpy scalar for numbers
        self._pending: dict[str, tuple[torch.Tensor | np.float32, float]] = {}
        self._scores: dict[str, tuple[list[torch.Tensor], list[torch.Tensor], Callable]] = {}  # not yet scored
        self._numbers: dict[str, list[tuple[float, float]]] = {}  # name -> (value, weight) not yet summed

    def update_mean(self, name: str, value: torch.Tensor | float, weight: float) -> None:
        """Adds ``value`` (a batch mean, e.g. the loss: a tensor, or the number ``check_finite``
        returned) with ``weight`` (its sample count). A number is only appended here; ``_sum_numbers``
        adds the pairs up later in arrival order as float32, bit for bit the tensor sum. Measured in
        the trainer (bench/throughput.py's A/B, MNIST MLP): summing each step, even as numpy scalars,
        cost ~2 % of the step; the append ~0.2 %."""
        if isinstance(value, torch.Tensor):
            self._add(name, value.detach() * weight, weight)
            return
        numbers = self._numbers.get(name)
        if numbers is None:
            self._known(name)
            numbers = self._numbers[name] = []
        numbers.append((value, weight))
        if len(numbers) >= NUMBERS_BUFFERED:
            self._sum_numbers(name)

    def _sum_numbers(self, name: str) -> None:
        total, weights = self._pending.get(name, (0, 0))
        for value, weight in self._numbers.pop(name):
            total = np.float32(value) * np.float32(weight) + total
            weights += weight
        self._pending[name] = (total, weights)

    def update_hits(self, name: str, hits: torch.Tensor) -> None:
        """Adds a batch's per-example hits (bools): their running mean is the micro accuracy."""
        self._add(name, hits.sum(), hits.numel())

    def update_hits_from_scores(self, name: str, scores: torch.Tensor, target: torch.Tensor,
                                predict: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Like ``update_hits(name, predict(scores) == target)``, batched: the scores wait until
        ``SCORES_BUFFERED`` batches (or the epoch's last) are in, then are scored in one go."""
        buffered = self._scores.get(name)
        if buffered is None:  # not setdefault: that would build two lists every step
            buffered = self._scores[name] = ([], [], predict)
        scores_list, targets, _ = buffered
        scores_list.append(scores.detach())
        targets.append(target)
        if len(scores_list) >= SCORES_BUFFERED:
            self._score(name)

    def _score(self, name: str) -> None:
        scores, targets, predict = self._scores.pop(name)
        self.update_hits(name, predict(torch.cat(scores)) == torch.cat(targets))

    def _known(self, name: str) -> None:
        if name not in self.names:
            raise KeyError(f"no training metric {name!r}; known: {', '.join(self.names)}")

    def _add(self, name: str, total: torch.Tensor, weight: float) -> None:
        self._known(name)
        sums, weights = self._pending.get(name, (0, 0))
        self._pending[name] = (total + sums, weight + weights)

    def log_if_epoch_ends(self, module: pl.LightningModule) -> None:
        """Call at the end of ``training_step``: on the epoch's last batch only (every rank reaches
        it on the same step, so the DDP sync at the epoch's end lines up), each epoch mean is logged
        once with its sample count as the batch size: Lightning's epoch value is then the sum of
        mean × count over the ranks divided by the summed count (``sync_dist``)."""
        trainer = module._trainer
        if trainer is None or not trainer.is_last_batch:
            return
        for name in list(self._scores):
            self._score(name)
        for name in list(self._numbers):
            self._sum_numbers(name)
        for name, (total, weight) in self._pending.items():
            self.log_mean(module, name, total / weight, weight)  # int hits / count: true division
        self._pending.clear()

    def log_mean(self, module: pl.LightningModule, name: str, mean: torch.Tensor | np.float32,
                 weight: float) -> None:
        """One Lightning ``self.log`` of an epoch mean as ``train/<name>``, made on the module's device
        (where the DDP sync runs: NCCL on GPUs) with its sample count as the batch size."""
        mean = torch.as_tensor(mean, dtype=torch.float32, device=module.device)
        module.log(f"train/{name}", mean, batch_size=weight, on_step=False, on_epoch=True, sync_dist=True,
                   prog_bar=name in self.prog_bar)
