"""Search spaces from config: ``{key: {low, high, log, include_zero}}`` or ``{choices: [...]}``."""

from __future__ import annotations

from typing import Any

from archbench.errors import ConfigError


def validate_space(space: dict[str, Any]) -> None:
    if not space:
        raise ConfigError("hydra.sweeper.params is empty: name at least one key to search, e.g. "
                          "hydra.sweeper.params.optimizer.lr={low: 1e-4, high: 1e-1, log: true}")
    for key, spec in space.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"hydra.sweeper.params.{key} must be a mapping (low/high or choices)")
        if "choices" in spec:
            continue
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low >= high:
            raise ConfigError(f"hydra.sweeper.params.{key}: need numbers low < high, got {low!r}, {high!r}")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"hydra.sweeper.params.{key}: a log scale needs low > 0 "
                              f"(use include_zero: true to also try 0)")


def suggest(trial, space: dict[str, Any]) -> dict[str, Any]:
    """One value per key. ``include_zero`` adds a categorical "is zero" switch beside a log range,
    so TPE can learn whether e.g. weight decay should be off entirely."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
            continue
        if spec.get("include_zero") and trial.suggest_categorical(f"{key}=0", [False, True]):
            values[key] = 0.0
            continue
        low, high = spec["low"], spec["high"]
        if isinstance(low, int) and isinstance(high, int) and not spec.get("float", False):
            values[key] = trial.suggest_int(key, low, high, log=bool(spec.get("log")))
        else:
            values[key] = trial.suggest_float(key, float(low), float(high), log=bool(spec.get("log")))
    return values
