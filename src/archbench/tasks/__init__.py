"""Task plug-ins: one module per learning problem, each exposing ``TASK`` (a ``tasks.base.Task``).

A task is chosen by configuration: ``model.task`` when the model fixes it (a GAN is adversarial
whatever the data), else ``data.task``, else what the prepared data says it is (``meta.task``).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING, Any

from archbench.errors import ConfigError

if TYPE_CHECKING:
    from archbench.tasks.base import Task

NOT_TASKS = {"base", "callbacks", "distill", "epoch_metrics", "module", "optim", "quality"}


@cache
def task_names() -> list[str]:
    """Every task module in this package (those that expose ``TASK``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_TASKS)


def load_task(name: str) -> Task:
    if name not in task_names():
        raise ConfigError(f"unknown task {name!r}; valid: {', '.join(task_names())}")
    return importlib.import_module(f"{__name__}.{name}").TASK


def task_name(model_cfg: Any, data_cfg: Any, meta_task: str | None) -> str:
    """The task this (model, data) pair runs: model's choice, then data's, then the data's own."""
    for choice in (model_cfg.get("task"), data_cfg.get("task")):
        if choice not in (None, "", "auto"):
            return str(choice)
    if not meta_task:
        raise ConfigError("no task: set data.task (valid: " + ", ".join(task_names()) + ")")
    return meta_task
