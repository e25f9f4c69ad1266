"""Report each epoch's validation metric to the Optuna trial and stop a trial the pruner gives up on.

optuna-integration's ``PyTorchLightningPruningCallback`` targets the ``lightning`` package and
raises inside the training process; this one works with ``pytorch_lightning``, decides on rank 0,
broadcasts the decision to every DDP rank and stops the fit cleanly (``train()`` then raises
``TrialPruned`` in the sweeper's process, where the trial is told PRUNED).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl

from archbench.sweep.context import TrialContext

PRUNED_AT = "archbench_pruned_at_epoch"


class OptunaPruning(pl.Callback):
    def __init__(self, context: TrialContext, monitor: str) -> None:
        self.context, self.monitor = context, monitor
        self._trial = None

    def __getstate__(self) -> dict:  # pickled into ddp_spawn processes: reopen the trial there
        return {**self.__dict__, "_trial": None}

    def _live_trial(self):
        if self._trial is None:
            self._trial = self.context.trial()
        return self._trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.global_rank == 0:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                trial = self._live_trial()
                trial.report(float(value), step=trainer.current_epoch)
                prune = trial.should_prune()
                if prune:  # recorded: successive-halving pruners answer a second call differently
                    trial.set_user_attr(PRUNED_AT, trainer.current_epoch)
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True


def pruned(context: TrialContext) -> bool:
    """Whether the pruning callback stopped this trial (read from storage, so it holds however the
    epochs ran: in this process or in DDP processes)."""
    from archbench.sweep.study import open_storage

    return PRUNED_AT in open_storage(context.storage).get_trial(context.trial_id).user_attrs
