"""Hydra/OmegaConf glue: custom resolvers, composing configs outside ``@hydra.main``, and
checks of values that YAML cannot express."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from archbench.errors import ConfigError
from archbench.paths import conf_dir, project_root


def register_resolvers() -> None:
    """``${archbench_root:}`` (project root) and ``${archbench_pid:}`` (keeps run dirs unique)."""
    if not OmegaConf.has_resolver("archbench_root"):
        OmegaConf.register_new_resolver("archbench_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("archbench_pid"):
        OmegaConf.register_new_resolver("archbench_pid", lambda: str(os.getpid()))


register_resolvers()


def config_groups(root: Path | None = None) -> dict[str, list[str]]:
    """Every config group under conf/ with its options, e.g. ``{"model": ["cnn", ...]}``."""
    base = root or conf_dir()
    groups: dict[str, list[str]] = {}
    for directory in sorted(p for p in base.rglob("*") if p.is_dir()):
        options = sorted(f.stem for f in directory.glob("*.yaml"))
        if options:
            groups[directory.relative_to(base).as_posix()] = options
    return groups


def compose(overrides: list[str] | None = None, output_dir: str | Path | None = None) -> DictConfig:
    """The config ``archbench-train`` would run with these overrides (for tests and tools).

    ``paths.output_dir`` normally comes from Hydra's run directory; pass ``output_dir`` here.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main: its config search path
        cfg = hydra_compose("config", overrides=list(overrides or []))
    else:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose("config", overrides=list(overrides or []))
    if output_dir is not None:
        cfg.paths.output_dir = str(output_dir)
    return cfg


def _int_at_least(cfg: DictConfig, key: str, minimum: int) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer ≥ {minimum}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Reject values that cannot work before anything is written."""
    from archbench.data.prepare import validate_split_fractions
    from archbench.tasks.optim import validate_optimizer

    _int_at_least(cfg, "trainer.max_epochs", 1)
    _int_at_least(cfg, "data.batch_size", 1)
    _int_at_least(cfg, "data.eval_batch_size", 1)
    _int_at_least(cfg, "seed", 0)
    validate_split_fractions(to_dict(cfg.data))
    validate_optimizer(to_dict(cfg.optimizer))
    monitor_mode = OmegaConf.select(cfg, "callbacks.mode")
    if monitor_mode not in ("min", "max"):
        raise ConfigError(f"callbacks.mode must be min or max, got {monitor_mode!r}")


def to_dict(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """``{"model.net.channels": "[32, 64]", ...}``: every leaf of the resolved config."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return flat
