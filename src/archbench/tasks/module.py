"""The LightningModule every task builds on."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

# attributes Lightning sets around every hook call: plain values, never parameters, buffers or modules
_HOOK_BOOKKEEPING = frozenset({"_current_fx_name"})


class TaskModule(pl.LightningModule):
    """``pl.LightningModule`` with a fast path for Lightning's per-hook bookkeeping.

    Lightning sets ``_current_fx_name`` before and after every hook it calls, 44 times per
    training step; ``nn.Module.__setattr__`` spends ~1 µs on each (it looks for a parameter, buffer
    or submodule of that name) where a plain set takes ~0.1 µs: ~35 µs of a 1.5 ms MNIST-1D MLP
    step (bench/throughput.py). Such a value is never a parameter, buffer or module, so the plain
    set is what ``nn.Module`` would end up doing anyway.
    """

    def setup(self, stage: str) -> None:
        """In every process that trains or tests (a DDP spawn rank starts fresh): the first vector-math
        call goes to a throwaway tensor (``archbench.threads``), so the run's own calls repeat."""
        from archbench.threads import settle_vector_math

        settle_vector_math()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOOK_BOOKKEEPING:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class KeepsTestRows:
    """A task module that keeps one row of numbers per test example (a prediction and its target,
    a user's hit) and writes them as ``test_predictions.npz``, one array per name in
    ``test_row_names``, in test order: what the report's paired comparisons and intervals read.
    Written only by a single process, which saw the whole test split."""

    test_row_names: tuple[str, ...] = ()

    def on_test_epoch_start(self) -> None:
        self._test_rows: list = []

    def keep_test_rows(self, *columns) -> None:
        import torch

        self._test_rows.append(torch.stack([c.detach().float().reshape(-1) for c in columns], dim=1).cpu())

    def test_outputs(self, out_dir, class_names: list[str]) -> list:
        import numpy as np
        import torch

        rows = getattr(self, "_test_rows", None)
        if self.trainer.world_size > 1 or not rows:
            return []
        table = torch.cat(rows).numpy()
        path = out_dir / "test_predictions.npz"
        np.savez_compressed(path, **{name: table[:, i] for i, name in enumerate(self.test_row_names)})
        return [path]
