"""Hydra/OmegaConf glue: custom resolvers, composing configs outside ``@hydra.main``, and
checks of values that YAML cannot express."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

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


NO_RECIPE = ("recipe=null", "recipe=none", "recipe=None")


def normalise_overrides(overrides: list[str]) -> list[str]:
    """``recipe=null``/``recipe=none`` → ``~recipe`` (Hydra cannot null an interpolated default)."""
    return ["~recipe" if o in NO_RECIPE else o for o in overrides]


def compose(overrides: list[str] | None = None, output_dir: str | Path | None = None,
            quiet: bool = True) -> DictConfig:
    """The config ``archbench-train`` would run with these overrides, recipe applied (for tests
    and tools).

    ``paths.output_dir`` normally comes from Hydra's run directory; pass ``output_dir`` here.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = normalise_overrides(list(overrides or []))
    if GlobalHydra.instance().is_initialized():  # inside @hydra.main: its config search path
        cfg = hydra_compose("config", overrides=list(overrides or []))
    else:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose("config", overrides=list(overrides or []))
    if output_dir is not None:
        cfg.paths.output_dir = str(output_dir)
    line = apply_recipe(cfg, list(overrides or []))
    if line and not quiet:
        print(line, flush=True)
    return cfg


PAIR_GROUPS = ("data", "model", "recipe")
# groups that choose where a run trains, not its budget: trainer=gpu or trainer=ddp keeps the
# recipe's trainer.max_epochs and gradient clipping (before, every trainer.* recipe key was dropped,
# so a pair trained the default 20 epochs on a GPU); trainer.max_epochs=N still wins
PLACEMENT_GROUPS = ("trainer",)


def explicit_keys(overrides: list[str]) -> set[str]:
    """Config keys the user chose: every ``key=value``/``group=option`` override, and every key an
    ``experiment=NAME`` config sets. ``data=``/``model=`` choose the pair a recipe belongs to, so
    they make no key explicit by themselves, nor does ``trainer=`` (where it trains)."""
    import yaml

    keys: set[str] = set()
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra") or key in PAIR_GROUPS or key in PLACEMENT_GROUPS:
            continue
        keys.add(key)
        path = conf_dir() / "experiment" / f"{value}.yaml"
        if key == "experiment" and path.is_file():
            body = yaml.safe_load(path.read_text()) or {}
            for entry in body.pop("defaults", []) or []:
                if isinstance(entry, dict):  # `override /optimizer: sgd` chooses the group
                    keys.update(k.split()[-1].strip("/") for k in entry)
            keys.update(dotted_leaves(body))
    return keys


def apply_recipe(cfg: DictConfig, overrides: list[str]) -> str | None:
    """Fill in the pair's recipe (loaded by Hydra under ``recipe_preset``) where the user chose
    nothing; returns the line that says so.

    A recipe key is kept out when the user set it, a parent of it (``optimizer=sgd`` keeps every
    ``optimizer.*`` key of the recipe out), or a key below it. ``recipe_preset`` is then replaced
    by ``recipe_applied`` (file, keys set, keys kept), so applying twice does nothing more.
    """
    preset = OmegaConf.select(cfg, "recipe_preset", default=None)
    if preset is None:
        return None
    chosen_recipe = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "recipe"]
    name = chosen_recipe[-1] if chosen_recipe else f"{cfg.data.name}_{cfg.model.name}"
    explicit = explicit_keys(overrides)

    def chosen(key: str) -> bool:
        return any(key == e or key.startswith(e + ".") or e.startswith(key + ".") for e in explicit)

    leaves = dotted_leaves(OmegaConf.to_container(preset, resolve=False))
    _refuse_unknown_recipe_keys(cfg, leaves, f"conf/recipe/{name}.yaml")
    applied = {k: v for k, v in leaves.items() if not chosen(k)}
    with open_dict(cfg):
        del cfg["recipe_preset"]
        _switch_groups(cfg, applied, chosen)
        for key, value in applied.items():
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        kept = sorted(k for k in leaves if k not in applied)
        cfg.recipe_applied = {"file": f"conf/recipe/{name}.yaml", "keys": sorted(applied), "kept": kept}
    line = f"archbench: recipe conf/recipe/{name}.yaml sets {', '.join(sorted(applied)) or 'nothing'}"
    return line + (f" (your choice kept: {', '.join(kept)})" if kept else "")


# recipe keys that may be new to the composed config: each group's own check names its valid keys
# (validate_optimizer, validate_scheduler, the net's constructor arguments)
OPEN_RECIPE_GROUPS = ("optimizer", "scheduler", "model")


def _refuse_unknown_recipe_keys(cfg: DictConfig, leaves: dict[str, Any], file: str) -> None:
    """A recipe key the config does not have (``data.batch_sise``) would be added unread: refused,
    naming the file and the closest existing keys."""
    from difflib import get_close_matches

    missing = object()
    for key in leaves:
        if key.split(".")[0] in OPEN_RECIPE_GROUPS or OmegaConf.select(cfg, key, default=missing) is not missing:
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        siblings = OmegaConf.select(cfg, parent) if parent else cfg
        names = [f"{parent}.{k}" if parent else str(k) for k in (siblings or {})] if isinstance(siblings, DictConfig) else []
        close = get_close_matches(key, names, n=2, cutoff=0.8)
        raise ConfigError(f"{file} sets {key}, a key the config does not have"
                          + (f"; did you mean {', '.join(close)}?" if close else ""))


def _switch_groups(cfg: DictConfig, applied: dict[str, Any], chosen) -> None:
    """A recipe that names another option of a group (``scheduler.name: multistep``) starts from
    that option's own file, conf/<group>/<name>.yaml, so no key of the composed option is left
    over; keys of the group the user set (``optimizer.lr=1e-4``) keep the user's values."""
    for group in ("optimizer", "scheduler"):
        name = applied.get(f"{group}.name")
        path = conf_dir() / group / f"{name}.yaml"
        if name is None or name == OmegaConf.select(cfg, f"{group}.name") or not path.is_file():
            continue
        mine = {key: value for key, value in cfg[group].items() if chosen(f"{group}.{key}")}
        cfg[group] = OmegaConf.merge(OmegaConf.load(path), mine)


def int_at_least(cfg: DictConfig, key: str, minimum: int) -> None:
    """``key`` (if set) is an integer ≥ ``minimum``, or one ConfigError line naming it."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer ≥ {minimum}, got {value!r}")


def number_at_least(cfg: Any, key: str, minimum: float) -> None:
    """``key`` (if set) is a finite number ≥ ``minimum``, or one ConfigError line naming it."""
    value = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else cfg.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{key} must be a finite number ≥ {minimum:g}, got {value!r}")


def validate_split_fractions(cfg: dict[str, Any]) -> None:
    for key in ("val_fraction", "test_fraction"):
        value = cfg.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or not 0 < float(value) < 1:
            raise ConfigError(f"data.{key} must be a number strictly between 0 and 1, got {value!r}")


# which weights a run tests, logs and registers: the monitored best epoch's or the last epoch's
CHECKPOINT_SELECTIONS = ("best", "last")


def validate(cfg: DictConfig) -> None:
    """Reject values that cannot work before anything is written."""
    from archbench.tasks.optim import validate_optimizer, validate_scheduler

    int_at_least(cfg, "trainer.max_epochs", 1)
    int_at_least(cfg, "data.batch_size", 1)
    int_at_least(cfg, "data.eval_batch_size", 1)
    int_at_least(cfg, "seed", 0)
    int_at_least(cfg, "threads", 1)  # null: torch's default
    validate_split_fractions(to_dict(cfg.data))
    validate_optimizer(to_dict(cfg.optimizer))
    validate_scheduler(to_dict(cfg.scheduler), to_dict(cfg.optimizer))
    monitor_mode = OmegaConf.select(cfg, "callbacks.mode")
    if monitor_mode not in ("min", "max", "auto"):
        raise ConfigError(f"callbacks.mode must be min, max or auto, got {monitor_mode!r}")
    select = OmegaConf.select(cfg, "callbacks.checkpoint.select", default="best")
    if select not in CHECKPOINT_SELECTIONS:
        raise ConfigError(f"unknown callbacks.checkpoint.select {select!r}; valid: {', '.join(CHECKPOINT_SELECTIONS)}")
    _validate_tracking_and_callbacks(cfg)
    _validate_trainer_numbers(cfg)
    channels_last = OmegaConf.select(cfg, "trainer.channels_last", default="auto")
    if not (channels_last == "auto" or isinstance(channels_last, bool)):
        raise ConfigError(f"unknown trainer.channels_last {channels_last!r}; valid: auto, true, false")


PROGRESS_BARS = ("rich", "tqdm", "none")


def _validate_trainer_numbers(cfg: DictConfig) -> None:
    """Trainer arguments Lightning takes without a check and fails on mid-run (a division by zero)
    or silently misuses (a negative clip flips the gradients' sign)."""
    int_at_least(cfg, "trainer.accumulate_grad_batches", 1)
    int_at_least(cfg, "trainer.check_val_every_n_epoch", 1)
    int_at_least(cfg, "trainer.log_every_n_steps", 0)
    number_at_least(cfg, "trainer.gradient_clip_val", 0)


def _validate_tracking_and_callbacks(cfg: DictConfig) -> None:
    from archbench.stores import check_tracking_scheme

    check_tracking_scheme(str(OmegaConf.select(cfg, "logger.tracking_uri", default="") or ""),
                          "logger.tracking_uri")
    register = OmegaConf.select(cfg, "register", default=False)
    if not isinstance(register, bool):
        raise ConfigError(f"register must be true or false, got {register!r}")
    bar = OmegaConf.select(cfg, "callbacks.progress_bar", default="none")
    if bar not in PROGRESS_BARS:
        raise ConfigError(f"unknown callbacks.progress_bar {bar!r}; valid: {', '.join(PROGRESS_BARS)}")
    int_at_least(cfg, "callbacks.early_stopping.patience", 0)
    number_at_least(cfg, "callbacks.early_stopping.min_delta", 0)


def to_dict(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def drop_keys(tree: dict[str, Any], dotted: Any) -> dict[str, Any]:
    """``tree`` (a plain nested dict) with each dotted key of ``dotted`` removed, in place; a key it
    does not hold is passed over."""
    for key in dotted:
        *parents, leaf = str(key).split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return tree


def dotted_leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: every leaf of a plain nested dict under its dotted key
    (an empty dict has no leaves)."""
    if not isinstance(node, dict):
        return {prefix: node}
    leaves: dict[str, Any] = {}
    for key, value in node.items():
        leaves.update(dotted_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """``{"model.net.channels": [32, 64], ...}``: every leaf of the resolved config."""
    return dotted_leaves(OmegaConf.to_container(cfg, resolve=True))


def best_of(cfg: DictConfig) -> dict[str, Any]:
    """The best trial's parameters of the sweep named by ``best_of`` (its ``sweep.json``, or the
    sweep directory holding it); {} when ``best_of`` is unset. They count as the user's choices:
    applied over the recipe, as if given on the command line."""
    import json
    from pathlib import Path

    from archbench.errors import ConfigError

    source = cfg.get("best_of")
    if not source:
        return {}
    path = Path(str(source))
    path = path / "sweep.json" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"best_of={source}: no sweep.json there; run the sweep "
                          f"(archbench-train -m hparams_search=lr_wd ...) first")
    sweep = json.loads(path.read_text())
    swept = (sweep.get("model"), sweep.get("data"))  # None for a sweep.json written before it said
    running = (OmegaConf.select(cfg, "model.name"), OmegaConf.select(cfg, "data.name"))
    if None not in swept + running and swept != running:  # another pair's lr and weight decay
        raise ConfigError(f"best_of={source} tuned {swept[0]} on {swept[1]}, not this run's {running[0]} on "
                          f"{running[1]}: sweep this pair (archbench-train -m hparams_search=lr_wd ...)")
    best = sweep.get("best_params") or {}
    if not best:
        raise ConfigError(f"best_of={source}: the sweep has no finished trial")
    return best
