"""Seed replicates of one (data, model) pair: a Hydra multirun over ``seed`` (``replicas=seeds``).

Each seed trains as its own run in ``<sweep dir>/seed<N>`` (own data order, metrics, checkpoint and
MLflow run, tagged ``pair`` and ``seed``); Hydra's launcher runs them (basic: one after another in
one process, sharing its start-up; joblib: side by side). This Hydra callback keeps the sweep
directory to exactly the seeds asked for and writes their summary next to it, ``<sweep dir>.json``
(per-seed metrics, mean and standard deviation): the pair's DVC metrics.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SEED_DIR = re.compile(r"^seed(-?\d+)$")


def swept_seeds(task_overrides: list[str]) -> list[int]:
    """The seeds a multirun's overrides expand to (``seed=42,43,44``, ``seed=range(42,45)``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    seeds = [int(a.split("=", 1)[1]) for job in jobs for a in job if a.split("=", 1)[0].lstrip("+") == "seed"]
    return sorted(set(seeds))


def summarise(seed_metrics: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Per-seed metrics with each metric's mean and sample standard deviation across seeds."""
    names = sorted({k for m in seed_metrics.values() for k in m})
    mean, std = {}, {}
    for name in names:
        values = [float(m[name]) for m in seed_metrics.values() if name in m and m[name] is not None]
        values = [v for v in values if math.isfinite(v)]
        if values:
            mean[name] = statistics.fmean(values)
            std[name] = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"seeds": {str(s): m for s, m in sorted(seed_metrics.items())}, "n": len(seed_metrics),
            "mean": mean, "std": std}


class ReplicaSummary(Callback):
    """Removes ``seed<N>`` folders of seeds no longer asked for; summarises the seeds at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        wanted = set(swept_seeds(list(config.hydra.overrides.task)))
        if not sweep_dir.is_dir() or not wanted:
            return
        for folder in sweep_dir.iterdir():
            match = SEED_DIR.match(folder.name)
            if folder.is_dir() and match and int(match.group(1)) not in wanted:
                shutil.rmtree(folder)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        found = {}
        for seed in swept_seeds(list(config.hydra.overrides.task)):
            metrics = sweep_dir / f"seed{seed}" / "metrics.json"
            if metrics.is_file():
                found[seed] = json.loads(metrics.read_text())
        summary = sweep_dir.with_name(sweep_dir.name + ".json")
        summary.write_text(json.dumps(summarise(found), indent=2, sort_keys=True) + "\n")
        curves = [sweep_dir / f"seed{seed}" / "curves.csv" for seed in found]
        mean_curves([c for c in curves if c.is_file()], sweep_dir.with_name(sweep_dir.name + ".curves.csv"))


def mean_curves(paths: list[Path], out: Path) -> None:
    """Per-epoch mean of each seed's ``curves.csv`` column (over the seeds that reached the epoch)."""
    import pandas as pd

    if not paths:
        return
    frames = pd.concat([pd.read_csv(path) for path in paths])
    frames.groupby("epoch", as_index=False).mean(numeric_only=True).to_csv(out, index=False)
