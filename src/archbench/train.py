"""``train(cfg) -> metrics``: the one training path every entry point, stage, test and sweep uses.

Generic: the task plug-in the config names (``archbench.tasks``) builds the datamodule, the
LightningModule and the logged model; this file knows no task, no sweep and no recipe. Heavy
imports live inside functions so ``--help`` and config errors answer instantly.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from archbench.config import config_groups, dotted_leaves, to_dict, validate
from archbench.resume import LAST_CHECKPOINT


def build_callbacks(cfg: DictConfig, out_dir: Path, monitor: str, mode: str) -> tuple[list, Any]:
    """Lightning's checkpoint/early-stopping/progress callbacks, archbench's own, and any
    ``callbacks.extra`` entries (instantiated from config: how a sweep adds its pruning)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
        RichProgressBar,
        TQDMProgressBar,
    )

    from archbench.tasks.callbacks import (
        DeterministicWithoutFill,
        EpochCurves,
        QuietProcess,
        RngStateInCheckpoint,
    )

    cb = cfg.callbacks
    verbose = bool(HydraConfig.get().verbose) if HydraConfig.initialized() else False
    callbacks: list = [EpochCurves(out_dir / "curves.csv"), LearningRateMonitor("epoch"),
                       RngStateInCheckpoint(), DeterministicWithoutFill(), QuietProcess(verbose)]
    # whole-epoch boundaries (save_on_train_epoch_end): resume continues at the next epoch
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=1,
        auto_insert_metric_name=False, save_on_train_epoch_end=True)
    if cb.checkpoint.enabled:
        callbacks.append(checkpoint)
        if cb.checkpoint.save_last or cb.checkpoint.get("select") == "last":
            # its own callback: Lightning 2.6's save_last refreshes last.ckpt only in epochs that
            # improve the monitor, and resume and select=last need every epoch's
            callbacks.append(ModelCheckpoint(dirpath=out_dir / "checkpoints", filename=LAST_CHECKPOINT,
                                             monitor=None, save_top_k=1, enable_version_counter=False,
                                             save_on_train_epoch_end=True))
    if cb.early_stopping.enabled:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, check_finite=True,
                                       patience=int(cb.early_stopping.patience),
                                       min_delta=float(cb.early_stopping.min_delta)))
    if cb.progress_bar == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif cb.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    callbacks += [instantiate(extra, _convert_="all") for extra in (cb.get("extra") or {}).values()]
    return callbacks, checkpoint if cb.checkpoint.enabled else None


# keys of the trainer config that are archbench's, not Lightning Trainer arguments
NET_SWITCHES = ("compile", "channels_last")


def _trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = to_dict(cfg.trainer)
    for switch in NET_SWITCHES:  # archbench's switches, not Trainer arguments
        kwargs.pop(switch, None)
    if cfg.callbacks.progress_bar == "none":
        kwargs["enable_progress_bar"] = False
    return kwargs


def check_trainer(cfg: DictConfig) -> None:
    """Lightning's own checks of ``trainer`` (accelerator name and presence, devices, strategy,
    precision, unknown arguments), made on a throwaway Trainer (~6 ms) before anything is written or
    tracked, so a bad setting is one line and exit 2, not a traceback after the run has started."""
    import logging

    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from archbench.console import LIGHTNING_LOGGERS
    from archbench.errors import ConfigError

    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:  # its device lines are printed once, by the real Trainer
        log.setLevel(logging.ERROR)
    try:
        pl.Trainer(**_trainer_kwargs(cfg), logger=False, enable_checkpointing=False, callbacks=[])
    except (MisconfigurationException, ValueError, TypeError) as err:
        reason = " ".join(str(err).split())
        choices = ", ".join(config_groups()["trainer"])
        raise ConfigError(f"trainer: {reason} (trainer= takes {choices})") from None
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def launch_rank() -> int:
    """This process's global rank when a launcher (torchrun, SLURM, Lightning's ddp) started
    several copies of the command; 0 otherwise (also in the parent of ``ddp_spawn``)."""
    from lightning_fabric.utilities.rank_zero import _get_rank

    return _get_rank() or 0


def _best_score(checkpoint, best_path: str) -> float:
    """The monitored value of the best checkpoint (read from the file when ddp_spawn trained in
    child processes, which hand back the path but not the score)."""
    import torch

    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    if best_path and Path(best_path).is_file():
        state = torch.load(best_path, map_location="cpu", weights_only=True)
        for key, value in state.get("callbacks", {}).items():
            if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
                return float(value["best_model_score"])
    return float("nan")


def _epochs_trained(trainer, out_dir: Path) -> int:
    if trainer.current_epoch:
        return int(trainer.current_epoch)
    curves = out_dir / "curves.csv"  # ddp_spawn: the epochs ran in child processes
    return max(0, len(curves.read_text().splitlines()) - 1) if curves.is_file() else 0


def resolve_monitor(cfg: DictConfig, task) -> DictConfig:
    """A copy of ``cfg`` whose ``callbacks.monitor``/``mode`` name real metrics (``auto`` → the task's)."""
    cfg = cfg.copy()
    cfg.callbacks.monitor, cfg.callbacks.mode = task.resolve_monitor(cfg.callbacks.monitor,
                                                                     cfg.callbacks.mode)
    return cfg


def train(cfg: DictConfig, parent_run_id: str | None = None) -> dict[str, float]:
    """Prepare (if needed), fit, test, track and return the run's metrics.

    Under a multi-process launcher every rank runs this; only rank 0 opens the MLflow run and
    writes files (Lightning's loggers and checkpoints are rank-0-only themselves).
    """
    from archbench.stores import check_store

    validate(cfg)
    check_trainer(cfg)
    check_store(cfg.logger.tracking_uri, "logger.tracking_uri")
    import pytorch_lightning as pl

    from archbench.data.prepare import ensure_prepared
    from archbench.resume import find_resume_point, run_fingerprint, start_fresh
    from archbench.tasks.callbacks import ConfigStamp
    from archbench.threads import use_threads

    main = launch_rank() == 0
    prepared = ensure_prepared(to_dict(cfg.data))  # once: build() reads the same
    point = find_resume_point(cfg, prepared[0].checksum)
    point.out_dir.mkdir(parents=True, exist_ok=True)
    if point.finished:  # same config, same code, tested: its metrics stand
        print(f"archbench: {point.out_dir} already holds this run, trained and tested with the same "
              f"config and code (resume=false trains it again)", flush=True)
        return json.loads((point.out_dir / "metrics.json").read_text())
    if main:
        start_fresh(point)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    use_threads(cfg.get("threads"))  # and settles MKL's vector math first: see archbench.threads
    stamp = ConfigStamp(run_fingerprint(cfg))  # config as given + code: what a re-run is compared to
    cfg, task, datamodule, built = build(cfg, prepared)
    apply_net_switches(cfg, built.nets)
    return _tracked_fit(cfg, task, built, datamodule, point, main,
                        parent_run_id or cfg.logger.get("parent_run_id"), stamp)


def apply_net_switches(cfg: DictConfig, nets) -> None:
    """archbench's switches in ``trainer`` that act on the built nets, in place (state_dict keys,
    so checkpoints and logged models, stay the same): channels-last conv weights, torch.compile."""
    from archbench.nets.common import use_channels_last

    for net in nets:
        if cfg.trainer.get("channels_last", "auto") in ("auto", True):
            use_channels_last(net)
        if cfg.trainer.get("compile"):
            net.compile()


def build(cfg: DictConfig, prepared: tuple | None = None):
    """Prepared data (``prepared``: ``ensure_prepared``'s answer when the caller has it), the task
    plug-in, its datamodule (loaded) and module for ``cfg``; returns ``(cfg with the monitor
    resolved, task, datamodule, built)``."""
    from archbench.data.prepare import ensure_prepared
    from archbench.tasks import load_task, task_name

    meta, data_dir = prepared or ensure_prepared(to_dict(cfg.data))
    task = load_task(task_name(cfg.model, cfg.data, meta.task))
    task.check(cfg, meta)
    cfg = resolve_monitor(cfg, task)
    datamodule = task.datamodule(cfg, data_dir, meta)
    loaded = datamodule.load()  # the checksum of what was actually read is what the run records
    return cfg, task, datamodule, task.build(cfg, loaded, datamodule)


def _tracked_fit(cfg, task, built, datamodule, point, main: bool, parent_run_id, stamp) -> dict[str, float]:
    from contextlib import nullcontext

    import mlflow

    from archbench.nets.common import count_parameters
    from archbench.tracking.mlflow_run import training_run

    meta, out_dir = datamodule.meta, point.out_dir
    n_params = sum(count_parameters(net) for net in built.nets)
    tags = {"data": meta.name, "model": cfg.model.name, "task": task.name, "seed": str(cfg.seed),
            "pair": f"{meta.name}-{cfg.model.name}",
            "data_checksum": meta.checksum, "data_dir": str(datamodule.data_dir),
            "data_layout": str(cfg.data.get("layout", "")), "output_dir": str(out_dir),
            "class_names": json.dumps(meta.class_names)[:4000],
            "input_shape": json.dumps(list(datamodule.input_shape)),
            **{k: str(v) for k, v in dotted_leaves(to_dict(cfg.logger.get("tags") or {})).items()}}
    summary = {"data": meta.name, "model": cfg.model.name, "task": task.name, "seed": int(cfg.seed),
               "train_fraction": float(cfg.data.get("train_fraction", 1.0)), "status": "running",
               "input_shape": list(datamodule.input_shape), "num_classes": meta.num_classes,
               "data_dir": str(datamodule.data_dir), "data_checksum": meta.checksum}
    if main:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tracking = training_run(cfg, tags, parent_run_id, resume_run_id=point.run_id) if main else nullcontext()
    with tracking as run:
        summary["run_id"] = run.info.run_id if run is not None else None
        if main:
            (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
            mlflow.log_params({"data.meta.input_shape": meta.input_shape, "model.parameters": n_params,
                               "data.meta.splits": json.dumps(meta.splits, sort_keys=True)})
            if point.checkpoint is not None:
                mlflow.set_tag("resumed_from", str(point.checkpoint))
        metrics, best_path = _fit_and_test(cfg, task, built, datamodule, point, summary["run_id"], stamp)
        metrics["parameters"] = float(n_params)
        if main:
            _finish(cfg, task, built, datamodule, run, summary, metrics, best_path, out_dir)
    return metrics


def _fit_and_test(cfg, task, built, datamodule, point, run_id, stamp) -> tuple[dict[str, float], str]:
    import pytorch_lightning as pl

    from archbench.gc_policy import settle
    from archbench.tasks.callbacks import FitVerdict, TestOutputs, TrainingClock
    from archbench.tracking.logger import BatchingMLFlowLogger

    out_dir, monitor = point.out_dir, cfg.callbacks.monitor
    # other ranks get a logger without a run: Lightning makes it a no-op there
    logger = BatchingMLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=cfg.logger.tracking_uri,
                                  run_id=run_id, flush_seconds=cfg.logger.flush_seconds)
    callbacks, checkpoint = build_callbacks(cfg, out_dir, monitor, cfg.callbacks.mode)
    prior_seconds = TrainingClock.seconds_in(point.checkpoint)
    callbacks += [*task.callbacks(cfg, out_dir), TestOutputs(out_dir, datamodule.meta.class_names),
                  TrainingClock(prior_seconds), stamp]
    trainer = pl.Trainer(**_trainer_kwargs(cfg), logger=logger, callbacks=callbacks,
                         default_root_dir=str(out_dir))
    settle()  # the training loop collects its garbage as usual (archbench.gc_policy)
    started = time.perf_counter()
    with _monitor_must_exist(monitor), _signals_reported(trainer, out_dir):
        trainer.fit(built.module, datamodule=datamodule,
                    ckpt_path=str(point.checkpoint) if point.checkpoint else None)
    train_seconds = prior_seconds + time.perf_counter() - started  # a resumed run counts it all
    epochs = _epochs_trained(trainer, out_dir)
    for callback in callbacks:
        if isinstance(callback, FitVerdict):
            callback.after_fit(epochs)  # may stop the run here (e.g. a sweep's pruner)
    best_path, score = _tested_checkpoint(cfg, trainer, checkpoint)
    with _signals_reported(trainer, out_dir):
        trainer.test(built.module, datamodule=datamodule,
                     ckpt_path=_test_from(built.module, callbacks, best_path), verbose=False)
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    return {**results, f"{monitor}_best": score, "epochs": float(epochs),
            "train_seconds": round(train_seconds, 3)}, best_path


@contextmanager
def _monitor_must_exist(monitor: str):
    """Lightning finds an unknown ``callbacks.monitor`` only once the first epoch is validated; its
    error (which lists the logged metrics) becomes one ConfigError line (the run is marked FAILED)."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from archbench.errors import ConfigError

    try:
        yield
    except (RuntimeError, MisconfigurationException) as err:
        text = " ".join(str(err).split())
        if f"`{monitor}` which is not available" not in text and f"monitor='{monitor}'" not in text:
            raise
        raise ConfigError(f"callbacks.monitor={monitor} is not a metric this run logs: {text}") from None


@contextmanager
def _signals_reported(trainer, out_dir: Path):
    """Lightning ends a fit or test that a signal stopped with ``SystemExit``: exit status 1 for
    Ctrl-C, 0 (success) for SIGTERM. Raise ``RunInterrupted`` instead, saying where the run stopped
    and how to continue it; the MLflow run ends KILLED and the command exits 130 or 143."""
    import signal

    from pytorch_lightning.trainer.states import TrainerStatus
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from archbench.errors import RunInterrupted

    try:
        yield
    except SystemExit as err:
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        number = signal.SIGTERM if isinstance(err, SIGTERMException) else signal.SIGINT
        last = out_dir / "checkpoints" / f"{LAST_CHECKPOINT}.ckpt"
        saved = _epochs_saved(last) if last.is_file() else 0
        where = (f"{saved if saved is not None else 'its'} finished epochs are in {last}" if last.is_file()
                 else "no epoch had finished, so there is nothing to continue")
        epoch = max(trainer.current_epoch, saved or 0) + 1  # under ddp_spawn only the file knows
        raise RunInterrupted(f"interrupted by {signal.Signals(number).name} in "
                             f"{'testing' if trainer.testing else f'epoch {epoch}'}; "
                             f"{where}; the same command with resume={out_dir} continues it "
                             f"(a dvc repro stage continues by itself); MLflow run marked KILLED", number) from None


def _epochs_saved(checkpoint: Path) -> int | None:
    """How many epochs a checkpoint holds, read from it (under ddp_spawn this process's trainer
    never trained: its own count stays 0); None when it cannot be read."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a message detail, never worth a second error
        return None
    return int(state.get("epoch", -1)) + 1


def _test_from(module, callbacks: list, path: str) -> str | None:
    """``ckpt_path`` for ``trainer.test``. Loaded after fit, Lightning's WeightAveraging restores a
    checkpoint's raw weights (``current_model_state``), not the averaged ones its ``state_dict``
    holds: those are loaded here and the module is tested as it is."""
    import torch
    from pytorch_lightning.callbacks import WeightAveraging

    if not path or not any(isinstance(callback, WeightAveraging) for callback in callbacks):
        return path or None
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return None


def _tested_checkpoint(cfg: DictConfig, trainer, checkpoint) -> tuple[str, float]:
    """The checkpoint a run tests, logs and registers, and its monitored value (``<monitor>_best``):
    the monitored best epoch, or with ``callbacks.checkpoint.select=last`` the end of a fixed budget
    (e.g. the averaged perceptron, whose validation cannot rank its epochs)."""
    if checkpoint is None:
        return "", float("nan")
    last = Path(checkpoint.dirpath) / f"{LAST_CHECKPOINT}.ckpt"
    if cfg.callbacks.checkpoint.get("select", "best") == "last" and last.is_file():
        value = trainer.callback_metrics.get(cfg.callbacks.monitor)
        return str(last), float(value) if value is not None else float("nan")
    return checkpoint.best_model_path, _best_score(checkpoint, checkpoint.best_model_path)


def _finish(cfg, task, built, datamodule, run, summary, metrics, best_path, out_dir: Path) -> None:
    """Rank 0 after testing: metrics to MLflow and metrics.json, the model logged (and registered)."""
    import mlflow

    from archbench.tracking.mlflow_run import log_metrics

    measured = task.cost_inputs(built.module, datamodule)
    if measured is not None:
        from archbench.nets.cost import inference_cost, training_peak_bytes
        from archbench.tasks.optim import build_optimizer

        metrics.update(inference_cost(*measured))
        # the eager update: a compiled one (optimizer.compile) would compile again here, for the
        # same state; its generated loops hold fewer temporaries, so this is an upper bound
        optimizer_cfg = {**to_dict(cfg.optimizer), "compile": False}
        peak = training_peak_bytes(*measured, int(cfg.data.batch_size), lambda params: build_optimizer(params, optimizer_cfg))
        if peak is not None:  # not measured: left out (the report shows "–"), never NaN in metrics.json
            metrics["cost/train_peak_mb"] = peak / 2**20
    # test/* are already in the run, logged once by Lightning's logger at the last step
    log_metrics({k: v for k, v in metrics.items() if k != "parameters" and not k.startswith("test/")})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    summary.update(status="finished", experiment_id=run.info.experiment_id,
                   tracking_uri=cfg.logger.tracking_uri, best_checkpoint=best_path,
                   data_checksum=datamodule.meta.checksum)
    if cfg.logger.log_model:
        model_uri = task.export(built.module, datamodule, cfg.logger.get("model_format"))
        mlflow.set_tag("model_uri", model_uri)
        if cfg.register:
            from archbench.tracking.registry import register_and_promote, registered_name

            promotion = register_and_promote(model_uri, registered_name(summary["data"], cfg.model.name),
                                             run.info.run_id, f"{cfg.callbacks.monitor}_best",
                                             cfg.callbacks.mode)
            summary["registered"] = {"name": promotion.name, "version": promotion.version,
                                     "champion": promotion.promoted, "note": promotion.note}
        summary["model_uri"] = model_uri
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")


def objective(metrics: dict[str, float]) -> float | None:
    """The best monitored validation value (``<monitor>_best``): what a sweeper optimises."""
    return next((v for k, v in metrics.items() if k.endswith("_best")), None)
