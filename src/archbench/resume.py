"""Continue a killed training from its last checkpoint.

A run directory keeps ``checkpoints/last.ckpt`` (Lightning, every epoch), ``checkpoints/config.sha256``
(the config that wrote them) and ``run.json`` (the MLflow run id, written when training starts).
``resume=auto`` (default) continues when all three match the current config; ``resume=false``
starts afresh; ``resume=<run dir>`` continues that directory and fails clearly if it cannot.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from archbench.errors import ConfigError

# keys that do not change what is trained
NOT_FINGERPRINTED = ("resume", "paths", "logger", "register", "callbacks.progress_bar")


def config_fingerprint(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=False)
    for dotted in NOT_FINGERPRINTED:
        *parents, leaf = dotted.split(".")
        node = plain
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ResumePoint:
    out_dir: Path
    checkpoint: Path | None  # None: start afresh
    run_id: str | None


def _mode(cfg: DictConfig) -> str | bool:
    value = cfg.get("resume", "auto")
    if value in (False, "false", "False", None):
        return False
    return value


def find_resume_point(cfg: DictConfig) -> ResumePoint:
    """Where this run writes, and what (if anything) it continues."""
    mode = _mode(cfg)
    explicit = mode not in (False, "auto", True, "true")
    out_dir = Path(str(mode)) if explicit else Path(cfg.paths.output_dir)
    checkpoints = out_dir / "checkpoints"
    last, stamp, run_file = checkpoints / "last.ckpt", checkpoints / "config.sha256", out_dir / "run.json"
    fingerprint = config_fingerprint(cfg)
    if mode is not False and last.is_file() and stamp.is_file() and run_file.is_file():
        if stamp.read_text().strip() == fingerprint:
            return ResumePoint(out_dir, last, json.loads(run_file.read_text()).get("run_id"))
        if explicit:
            raise ConfigError(f"cannot resume {out_dir}: it was trained with a different config "
                              f"(pass the same overrides as the original run)")
    elif explicit:
        raise ConfigError(f"nothing to resume in {out_dir}: no checkpoints/last.ckpt and run.json there")
    return ResumePoint(out_dir, None, None)


def start_fresh(point: ResumePoint, cfg: DictConfig) -> None:
    """Clear stale checkpoints and stamp the directory with this config's fingerprint."""
    checkpoints = point.out_dir / "checkpoints"
    if point.checkpoint is None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "config.sha256").write_text(config_fingerprint(cfg) + "\n")
