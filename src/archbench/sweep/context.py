"""The Optuna trial a training runs under, handed from the sweeper to ``train()``.

Hydra's basic launcher runs each job in the sweeper's own process, so a module-level slot is
enough; the trial itself is re-opened from its storage wherever it is used (also inside DDP
processes spawned by Lightning).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrialContext:
    storage: str
    study_name: str
    trial_id: int
    number: int
    parent_run_id: str | None = None
    run_id: str | None = None  # the trial's MLflow run, filled in by train()
    tags: dict[str, str] = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)  # storages do not keep the pruner: rebuild it

    def trial(self):
        """The live ``optuna.Trial`` (reopened from storage in whichever process asks)."""
        import optuna

        from archbench.sweep.study import make_pruner, open_storage

        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage),
                                  pruner=make_pruner(self.pruner))
        return optuna.Trial(study, self.trial_id)


_CURRENT: TrialContext | None = None


def current() -> TrialContext | None:
    return _CURRENT


def activate(context: TrialContext | None) -> None:
    global _CURRENT
    _CURRENT = context
