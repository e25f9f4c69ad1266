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


def _swept_jobs(task_overrides: list[str]) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper expands a multirun's command line."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _is_seed(override: str) -> bool:
    return override.split("=", 1)[0].lstrip("+") == "seed"


def swept_seeds(task_overrides: list[str]) -> list[int]:
    """The seeds a multirun's overrides expand to (``seed=42,43,44``, ``seed=range(42,45)``)."""
    jobs = _swept_jobs(task_overrides)
    return sorted({int(a.split("=", 1)[1]) for job in jobs for a in job if _is_seed(a)})


def shared_seed_folders(task_overrides: list[str]) -> str | None:
    """Why a replicas multirun's jobs would share ``seed<N>`` folders (one job overwriting another's
    run and the summary mixing configurations), or None: each job must be its own seed."""
    jobs = _swept_jobs(task_overrides)
    seeds = [next((a.split("=", 1)[1] for a in job if _is_seed(a)), None) for job in jobs]
    if len(set(seeds)) == len(jobs):
        return None
    common = set.intersection(*map(set, jobs))
    keys = list(dict.fromkeys(a.split("=", 1)[0] for job in jobs for a in job if a not in common and not _is_seed(a)))
    if not keys:
        return f"seed repeats a value ({', '.join(str(s) for s in seeds)}): give each seed once"
    swept = " and ".join([", ".join(keys[:-1]), keys[-1]] if len(keys) > 1 else keys)
    return (f"replicas=seeds repeats one configuration over seeds, and {swept} {'are' if len(keys) > 1 else 'is'} "
            f"swept too: those jobs would share the seed<N> folders, each overwriting the last. Run one multirun "
            f"per {'combination of their values' if len(keys) > 1 else 'value of it'}, each "
            f"with its own hydra.sweep.dir")


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
        print(summary_lines(sweep_dir, len(swept_seeds(list(config.hydra.overrides.task))), found), flush=True)


def summary_lines(sweep_dir: Path, asked: int, found: dict[int, dict[str, float]]) -> str:
    """The replicates in a few console lines: which pair, how many seeds finished, each test metric
    and best validation value as mean ± std, and where the summary is."""
    summary = summarise(found)
    first = sweep_dir / f"seed{min(found)}" / "run.json" if found else None
    run = json.loads(first.read_text()) if first and first.is_file() else {}
    pair = f"{run['model']} on {run['data']}" if run else "no run"
    done = f"{len(found)} of {asked} seeds" if len(found) != asked else f"{asked} seed{'' if asked == 1 else 's'}"

    def spread(prefix: str, suffix: str = "") -> str:
        return ", ".join(f"{k.removeprefix(prefix).removesuffix(suffix).replace('acc_then_loss', 'acc (+ loss tie-break)')} "
                         f"{v:.4g} ± {summary['std'][k]:.2g}"
                         for k, v in summary["mean"].items() if k.startswith(prefix) and k.endswith(suffix))

    lines = [f"archbench: {pair}, {done} finished ({', '.join(map(str, sorted(found))) or 'none'})",
             f"  summary        {sweep_dir.with_name(sweep_dir.name + '.json')}"]
    if found:
        lines += [f"  test           {spread('test/')}", f"  best val       {spread('val/', '_best')}"]
    return "\n".join(lines)


def mean_curves(paths: list[Path], out: Path) -> None:
    """Per-epoch mean of each seed's ``curves.csv`` column (over the seeds that reached the epoch)."""
    import pandas as pd

    if not paths:
        return
    frames = pd.concat([pd.read_csv(path) for path in paths])
    frames.groupby("epoch", as_index=False).mean(numeric_only=True).to_csv(out, index=False)
