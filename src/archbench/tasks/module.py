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
