"""Continue a killed training from its last checkpoint.

A run directory keeps ``checkpoints/last.ckpt`` (Lightning, every epoch; it carries the fingerprint
of the config that wrote it, see ``ConfigStamp``) and ``run.json`` (the MLflow run id, written when
training starts). ``resume=auto`` (default) continues when both match the current config (and does nothing when that
run already finished: its ``metrics.json`` stands, so a re-run stage with one more seed trains only
that seed); ``resume=false``
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

LAST_CHECKPOINT = "last"  # checkpoints/last.ckpt: written at every epoch's end, what resume continues from

# where each checkpoint records the fingerprint of the config that wrote it
CONFIG_STAMP_KEY = "archbench_config_sha256"
# keys that do not change what is trained
NOT_FINGERPRINTED = ("resume", "paths", "logger", "register", "callbacks.progress_bar",
                     # where it runs, not what it computes (data.batch_size is the global batch): a
                     # multi-node job's checkpoint continues on one node, and the other way round
                     "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.accelerator",
                     "trainer.sync_batchnorm", "threads",
                     # what it shows, and switches that keep the math (and the state_dict keys)
                     "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.enable_model_summary",
                     "trainer.compile", "optimizer.compile", "trainer.channels_last", "data.eval_batch_size", "data.verify_checksum")


def code_fingerprint() -> str:
    """sha256 of the package's training code (every module but the report): a checkpoint written
    by other code is not continued, so a re-run DVC stage whose code changed retrains."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "report" not in path.relative_to(package).parts:
            digest.update(path.relative_to(package).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_fingerprint(cfg: DictConfig) -> str:
    """What a checkpoint must have been written under to be continued: this config and this code."""
    return hashlib.sha256((config_fingerprint(cfg) + code_fingerprint()).encode()).hexdigest()


def config_fingerprint(cfg: DictConfig) -> str:
    from archbench.config import drop_keys

    plain = drop_keys(OmegaConf.to_container(cfg, resolve=False), NOT_FINGERPRINTED)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ResumePoint:
    out_dir: Path
    checkpoint: Path | None  # None: start afresh
    run_id: str | None
    finished: bool = False  # the directory already holds this run, tested: nothing to redo


def _mode(cfg: DictConfig) -> str | bool:
    value = cfg.get("resume", "auto")
    if value in (False, "false", "False", None):
        return False
    return value


def find_resume_point(cfg: DictConfig, data_checksum: str | None = None) -> ResumePoint:
    """Where this run writes, and what (if anything) it continues: a run of the same config and
    code on the same prepared data (``data_checksum``: your own file edited since is other data)."""
    mode = _mode(cfg)
    explicit = mode not in (False, "auto", True, "true")
    out_dir = Path(str(mode)) if explicit else Path(cfg.paths.output_dir)
    last, run_file = out_dir / "checkpoints" / f"{LAST_CHECKPOINT}.ckpt", out_dir / "run.json"
    fingerprint = run_fingerprint(cfg)
    if mode is not False and last.is_file() and run_file.is_file():
        stamped = stamped_fingerprint(last)
        if stamped == fingerprint:
            run = json.loads(run_file.read_text())
            trained_on = run.get("data_checksum")
            if not (data_checksum and trained_on and trained_on != data_checksum):
                done = run.get("status") == "finished" and (out_dir / "metrics.json").is_file()
                return ResumePoint(out_dir, last, run.get("run_id"), finished=done)
            if explicit:
                raise ConfigError(f"cannot resume {out_dir}: it was trained on other data ({trained_on[:19]}…, "
                                  f"now {data_checksum[:19]}…: the files changed since); resume=false starts afresh")
            print(f"archbench: {out_dir} holds a run on other data (its files changed since): training afresh",
                  flush=True)
            return ResumePoint(out_dir, None, None)
        if explicit and stamped is None:
            raise ConfigError(f"cannot resume {out_dir}: {last} cannot be read (truncated, or not a "
                              f"checkpoint archbench wrote); resume=false starts afresh")
        if explicit:
            raise ConfigError(f"cannot resume {out_dir}: it was trained with a different config or "
                              f"archbench version (pass the same overrides as the original run)")
    elif explicit:
        raise ConfigError(f"nothing to resume in {out_dir}: no checkpoints/last.ckpt and run.json there")
    return ResumePoint(out_dir, None, None)


def stamped_fingerprint(checkpoint: Path) -> str | None:
    """The config fingerprint a checkpoint was written under (None for one without)."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file is simply not resumable
        return None
    return state.get(CONFIG_STAMP_KEY)


def start_fresh(point: ResumePoint) -> None:
    """Clear a directory's stale checkpoints (nothing is created: Lightning makes the folder)."""
    if point.checkpoint is None:
        shutil.rmtree(point.out_dir / "checkpoints", ignore_errors=True)
