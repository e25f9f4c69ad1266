"""Report each epoch's validation metric to the Optuna trial and stop a trial the pruner gives up on.

The sweeper adds this callback to a trial's job through config (``callbacks.extra.optuna_pruning``),
so ``train()`` knows nothing of Optuna. optuna-integration's ``PyTorchLightningPruningCallback``
targets the ``lightning`` package and raises inside the training process; this one works with
``pytorch_lightning``, decides on rank 0, broadcasts the decision to every DDP rank, stops the fit
cleanly and, after it, ends the run with ``RunStopped`` (the sweeper tells the trial PRUNED).
"""

from __future__ import annotations

import json
import math

import pytorch_lightning as pl

from archbench.errors import RunStopped
from archbench.tasks.callbacks import FitVerdict

PRUNED_AT = "archbench_pruned_at_epoch"


class OptunaPruning(FitVerdict):
    def __init__(self, storage: str, study_name: str, trial_id: int, monitor: str,
                 pruner: str | dict | None = None) -> None:
        self.storage, self.study_name, self.trial_id = storage, study_name, int(trial_id)
        self.monitor = monitor
        self.pruner = json.loads(pruner) if isinstance(pruner, str) else dict(pruner or {})
        self._trial = None

    def __getstate__(self) -> dict:  # pickled into ddp_spawn processes: reopen the trial there
        return {**self.__dict__, "_trial": None}

    def _live_trial(self):
        """The live ``optuna.Trial`` (reopened from storage in whichever process asks)."""
        if self._trial is None:
            import optuna

            from archbench.sweep.study import make_pruner, open_storage

            study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage),
                                      pruner=make_pruner(self.pruner))
            self._trial = optuna.Trial(study, self.trial_id)
        return self._trial

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run_id = getattr(trainer.logger, "run_id", None)
        if trainer.global_rank == 0 and run_id:  # so a restarted sweep can close it if we die
            self._live_trial().set_user_attr("mlflow_run_id", run_id)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.global_rank == 0:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and math.isfinite(float(value)):
                trial = self._live_trial()
                trial.report(float(value), step=trainer.current_epoch)
                # a trial that has reached its last epoch is complete: never discard it
                last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
                prune = not last_epoch and trial.should_prune()
                if prune:  # recorded: successive-halving pruners answer a second call differently
                    trial.set_user_attr(PRUNED_AT, trainer.current_epoch)
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True

    def after_fit(self, epochs: int) -> None:
        """Read from storage, so it holds however the epochs ran (here or in DDP processes)."""
        from archbench.sweep.study import open_storage

        attrs = open_storage(self.storage).get_trial(self.trial_id).user_attrs
        if PRUNED_AT in attrs:
            raise RunStopped(f"pruned after epoch {epochs}", {"optuna.trial_state": "PRUNED"})
