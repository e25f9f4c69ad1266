"""Registers ``hydra/sweeper=archbench_optuna``; the loop itself is ``archbench.sweep.runner``.

Why not hydra-optuna-sweeper: it pins optuna < 3 and never hands the trial to the job, so it
cannot prune.
"""

# no `from __future__ import annotations`: Hydra loads plugins outside sys.modules, where
# dataclasses cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class ArchbenchOptunaSweeperConf:
    _target_: str = "hydra_plugins.archbench_optuna_sweeper.sweeper.ArchbenchOptunaSweeper"
    n_trials: int = 20
    direction: Optional[str] = None
    storage: Optional[str] = None
    study_name: Optional[str] = None
    sampler: Dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 42})
    pruner: Dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    params: Dict[str, Any] = field(default_factory=dict)
    max_failure_rate: float = 0.5
    heartbeat_interval: Optional[int] = 10
    grace_period: Optional[int] = 30
    register: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="archbench_optuna",
                             node=ArchbenchOptunaSweeperConf, provider="archbench")


class ArchbenchOptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                     for k, v in conf.items()}
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list) -> Any:
        from archbench.cli.common import reporting_errors
        from archbench.sweep.runner import run_sweep

        return reporting_errors("archbench-train", lambda: run_sweep(self, arguments))
