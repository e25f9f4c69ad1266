"""``train(cfg) -> metrics``: the one training path every entry point, stage, test and sweep uses.

Heavy imports (torch, Lightning, MLflow) live inside functions so ``--help`` and config errors
answer instantly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from archbench.config import to_dict, validate
from archbench.data.prepare import ensure_prepared

LM_MODELS = "rnn, lstm, gru, transformer"


def build_net(model_cfg: DictConfig, input_shape: list[int], num_classes: int,
              language_model: bool = False):
    """Instantiate ``model.net`` (or ``model.lm_net`` on text) with the dataset's sizes."""
    from hydra.utils import instantiate

    from archbench.errors import ArchbenchError, IncompatibleError

    key = "lm_net" if language_model else "net"
    if key not in model_cfg:
        raise IncompatibleError(f"model {model_cfg.name} cannot model text; use one of {LM_MODELS}")
    try:
        return instantiate(model_cfg[key], input_shape=list(input_shape), num_classes=num_classes,
                           _convert_="all")
    except Exception as err:  # Hydra wraps constructor errors; surface ours unchanged
        cause = err
        while cause.__cause__ is not None and not isinstance(cause, ArchbenchError):
            cause = cause.__cause__
        if isinstance(cause, ArchbenchError):
            raise cause from None
        raise


def build_datamodule(cfg: DictConfig, meta):
    from archbench.data.datamodule import TensorDataModule, TextDataModule

    data = cfg.data
    if meta.kind == "text":
        return TextDataModule(data.dir, block_size=int(data.block_size), batch_size=int(data.batch_size),
                              eval_batch_size=int(data.eval_batch_size),
                              steps_per_epoch=int(data.steps_per_epoch),
                              verify_checksum=bool(data.verify_checksum), seed=int(cfg.seed))
    return TensorDataModule(data.dir, batch_size=int(data.batch_size),
                            eval_batch_size=int(data.eval_batch_size), layout=data.layout,
                            verify_checksum=bool(data.verify_checksum), seed=int(cfg.seed))


def quality_classifier_dir(cfg: DictConfig, meta) -> Path:
    """The classification run whose features score a GAN: ``model.quality.classifier`` is a run
    directory, ``runs:/<mlflow run id>``, or ``auto`` (train ``model.quality.auto_model`` on the
    same data once, cached under ``<output_root>/quality/``)."""
    import mlflow

    from archbench.errors import ConfigError

    spec = str(cfg.model.quality.classifier)
    if spec.startswith("runs:/"):
        mlflow.set_tracking_uri(cfg.logger.tracking_uri)
        try:
            run = mlflow.get_run(spec.removeprefix("runs:/").strip("/").split("/")[0])
        except mlflow.exceptions.MlflowException as err:
            raise ConfigError(f"model.quality.classifier={spec}: no such MLflow run") from err
        return Path(run.data.tags.get("output_dir", ""))
    if spec != "auto":
        return Path(spec)
    run_dir = Path(cfg.paths.output_root) / "quality" / f"{meta.name}-{meta.checksum[7:19]}"
    run_file = run_dir / "run.json"
    if run_file.is_file() and json.loads(run_file.read_text()).get("status") == "finished":
        return run_dir
    from archbench.config import compose

    model = str(cfg.model.quality.auto_model)
    qcfg = compose([f"data={meta.name}", f"model={model}", "resume=false", "register=false"],
                   output_dir=run_dir)
    qcfg.data = cfg.data  # the same prepared data (e.g. the same data.root)
    qcfg.paths.root, qcfg.paths.data_dir = cfg.paths.root, cfg.paths.data_dir
    qcfg.logger.tracking_uri, qcfg.logger.log_model = cfg.logger.tracking_uri, False
    qcfg.callbacks.progress_bar = "none"
    qcfg.run_name = f"{model}-{meta.name}-gan-features"
    print(f"archbench: training the {model} classifier that scores GAN samples on {meta.name} "
          f"(once; cached in {run_dir})", flush=True)
    train(qcfg)
    return run_dir


def build_adversarial(cfg: DictConfig, datamodule, meta):
    """Generator, discriminator and the frozen feature classifier around an ``AdversarialTask``."""
    from hydra.utils import instantiate

    from archbench.errors import IncompatibleError
    from archbench.tasks.adversarial import AdversarialTask
    from archbench.tasks.quality import FrozenClassifier, PixelSpace, load_classifier_run

    if meta.kind != "image":
        raise IncompatibleError(f"model {cfg.model.name} generates images; {meta.name} is {meta.kind} "
                                f"data (use data=digits or data=mnist)")
    if datamodule.layout != "default":
        raise IncompatibleError(f"model {cfg.model.name} needs data.layout=default")
    shape = list(datamodule.input_shape)
    noise_dim = int(cfg.model.noise_dim)
    generator = instantiate(cfg.model.generator, input_shape=shape, noise_dim=noise_dim, _convert_="all")
    discriminator = instantiate(cfg.model.discriminator, input_shape=shape, _convert_="all")
    classifier_net = load_classifier_run(quality_classifier_dir(cfg, meta), meta.checksum)
    space = PixelSpace(meta.normalization["mean"], meta.normalization["std"])
    model = cfg.model
    task = AdversarialTask(
        generator, discriminator, FrozenClassifier(classifier_net, space, shape), meta.num_classes,
        noise_dim=noise_dim, optimizer=to_dict(cfg.optimizer),
        discriminator_lr_scale=float(model.discriminator_lr_scale), d_steps=int(model.d_steps),
        label_smoothing=float(model.label_smoothing), num_samples=int(model.quality.num_samples),
        coverage_min_share=float(model.quality.coverage_min_share), seed=int(cfg.seed))
    return task, generator, discriminator


def build_task(cfg: DictConfig, net, meta):
    if meta.kind == "text":
        from archbench.tasks.language_model import LanguageModelTask

        return LanguageModelTask(
            net, vocab=meta.class_names, block_size=int(cfg.data.block_size),
            optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler),
            sample_every_n_epochs=int(cfg.data.get("sample_every_n_epochs", 1)),
            sample_length=int(cfg.data.get("sample_length", 200)), seed=int(cfg.seed))
    from archbench.tasks.classification import ClassificationTask

    return ClassificationTask(
        net, num_classes=meta.num_classes, loss=cfg.model.loss, optimizer=to_dict(cfg.optimizer),
        scheduler=to_dict(cfg.scheduler), l1=float(cfg.model.get("l1", 0.0)),
        augment_shift=float(cfg.data.get("augment_shift", 0.0)))


def build_callbacks(cfg: DictConfig, out_dir: Path) -> tuple[list, Any]:
    from pytorch_lightning.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
        RichProgressBar,
        TQDMProgressBar,
    )

    from archbench.tasks.callbacks import EpochCurves, RngStateInCheckpoint, SampleGrid

    cb = cfg.callbacks
    callbacks: list = [EpochCurves(out_dir / "curves.csv"), LearningRateMonitor("epoch"),
                       RngStateInCheckpoint()]
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", filename="best", monitor=cb.monitor, mode=cb.mode,
        save_last=bool(cb.checkpoint.save_last), save_top_k=1, auto_insert_metric_name=False,
        save_on_train_epoch_end=True)  # a whole-epoch boundary: resume continues at the next epoch
    if cb.checkpoint.enabled:
        callbacks.append(checkpoint)
    if cb.early_stopping.enabled:
        callbacks.append(EarlyStopping(monitor=cb.monitor, mode=cb.mode, check_finite=True,
                                       patience=int(cb.early_stopping.patience),
                                       min_delta=float(cb.early_stopping.min_delta)))
    if cfg.model.get("task") == "adversarial":
        callbacks.append(SampleGrid(out_dir, int(cfg.model.sample_every_n_epochs)))
    if cb.progress_bar == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif cb.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    return callbacks, checkpoint if cb.checkpoint.enabled else None


def _trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = to_dict(cfg.trainer)
    kwargs.pop("compile", None)  # archbench's switch, not a Trainer argument
    if cfg.callbacks.progress_bar == "none":
        kwargs["enable_progress_bar"] = False
    return kwargs


def launch_rank() -> int:
    """This process's global rank when a launcher (torchrun, SLURM, Lightning's ddp) started
    several copies of the command; 0 otherwise (also in the parent of ``ddp_spawn``)."""
    from lightning_fabric.utilities.rank_zero import _get_rank

    return _get_rank() or 0


def _best_score(checkpoint, best_path: str) -> float:
    """The monitored value of the best checkpoint (read from the file when ddp_spawn trained in
    child processes, which hand back the path but not the score)."""
    import torch

    if checkpoint is None:
        return float("nan")
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


def train(cfg: DictConfig, parent_run_id: str | None = None) -> dict[str, float]:
    """Prepare (if needed), fit, test, track and return the run's metrics.

    Under a multi-process launcher every rank runs this; only rank 0 opens the MLflow run and
    writes files (Lightning's loggers and checkpoints are rank-0-only themselves).
    """
    validate(cfg)
    from contextlib import nullcontext

    import mlflow
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from archbench.nets.common import count_parameters
    from archbench.resume import find_resume_point, start_fresh
    from archbench.sweep.context import current
    from archbench.tasks.callbacks import TestOutputs, TrainingClock
    from archbench.tracking.mlflow_run import log_metrics, training_run

    main = launch_rank() == 0
    trial = current()  # set when an Optuna sweep runs this training as one of its trials
    point = find_resume_point(cfg)
    out_dir = point.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    meta = ensure_prepared(to_dict(cfg.data))
    datamodule = build_datamodule(cfg, meta)
    datamodule.load()
    if cfg.model.get("task") == "adversarial":
        task, net, discriminator = build_adversarial(cfg, datamodule, meta)
        n_params = count_parameters(net) + count_parameters(discriminator)
    else:
        net = build_net(cfg.model, datamodule.input_shape, meta.num_classes, meta.kind == "text")
        task = build_task(cfg, net, meta)
        n_params = count_parameters(net)
    if cfg.trainer.get("compile"):
        net.compile()  # in place: state_dict keys (checkpoints, logged models) stay the same
    monitor, mode = cfg.callbacks.monitor, cfg.callbacks.mode
    tags = {"data": meta.name, "model": cfg.model.name, "data_checksum": meta.checksum,
            "data_layout": str(meta.source.get("layout", "")), "output_dir": str(out_dir),
            "class_names": json.dumps(meta.class_names)[:4000],
            "input_shape": json.dumps(list(datamodule.input_shape)),
            **(trial.tags if trial else {})}
    if trial is not None:
        parent_run_id = parent_run_id or trial.parent_run_id
    if main:
        start_fresh(point, cfg)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tracking = (training_run(cfg, tags, parent_run_id, resume_run_id=point.run_id) if main
                else nullcontext())
    with tracking as run:
        run_id = run.info.run_id if run is not None else None
        if trial is not None:
            trial.run_id = run_id
            if main:  # recorded now, so a restarted sweep can close the run if this process dies
                trial.trial().set_user_attr("mlflow_run_id", run_id)
        started_summary = {"data": meta.name, "model": cfg.model.name, "run_id": run_id,
                           "status": "running", "task": str(cfg.model.get("task", "classification")),
                           "input_shape": list(datamodule.input_shape), "num_classes": meta.num_classes}
        if main:
            (out_dir / "run.json").write_text(json.dumps(started_summary, indent=2) + "\n")
            mlflow.log_params({"data.meta.input_shape": meta.input_shape, "model.parameters": n_params,
                               "data.meta.splits": json.dumps(meta.splits, sort_keys=True)})
            if point.checkpoint is not None:
                mlflow.set_tag("resumed_from", str(point.checkpoint))
        # other ranks get a logger without a run: Lightning makes it a no-op there
        logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name,
                              tracking_uri=cfg.logger.tracking_uri, run_id=run_id)
        callbacks, checkpoint = build_callbacks(cfg, out_dir)
        prior_seconds = TrainingClock.seconds_in(point.checkpoint)
        callbacks += [TestOutputs(out_dir, meta.class_names), TrainingClock(prior_seconds)]
        if trial is not None:
            from archbench.sweep.pruning import OptunaPruning

            callbacks.append(OptunaPruning(trial, monitor))
        trainer = pl.Trainer(**_trainer_kwargs(cfg), logger=logger, callbacks=callbacks,
                             default_root_dir=str(out_dir))
        started = time.perf_counter()
        trainer.fit(task, datamodule=datamodule,
                    ckpt_path=str(point.checkpoint) if point.checkpoint else None)
        train_seconds = prior_seconds + time.perf_counter() - started  # a resumed run counts it all
        if trial is not None:
            from archbench.sweep.pruning import pruned

            if pruned(trial):
                import optuna

                raise optuna.TrialPruned(f"pruned after epoch {_epochs_trained(trainer, out_dir)}")
        best_path = checkpoint.best_model_path if checkpoint is not None else ""
        trainer.test(task, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)
        results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        metrics = {
            **results,
            f"{monitor}_best": _best_score(checkpoint, best_path),
            "epochs": float(_epochs_trained(trainer, out_dir)),
            "train_seconds": round(train_seconds, 3),
            "parameters": float(n_params),
        }
        if not main:
            return metrics
        log_metrics({k: v for k, v in metrics.items() if k != "parameters"})
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        summary = {**started_summary, "status": "finished",
                   "experiment_id": run.info.experiment_id, "tracking_uri": cfg.logger.tracking_uri,
                   "best_checkpoint": best_path, "data_checksum": meta.checksum}
        if cfg.logger.log_model:
            model_uri = log_trained_model(task, datamodule, cfg.logger.get("model_format"))
            mlflow.set_tag("model_uri", model_uri)
            if cfg.register:
                from archbench.tracking.registry import register_and_promote, registered_name

                promotion = register_and_promote(model_uri, registered_name(meta.name, cfg.model.name),
                                                 run.info.run_id, f"{monitor}_best", mode)
                summary["registered"] = {"name": promotion.name, "version": promotion.version,
                                         "champion": promotion.promoted}
            summary["model_uri"] = model_uri
        (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return metrics


def log_trained_model(task, datamodule, serialization_format: str | None) -> str:
    """Log the classifier (inputs → probabilities) or the language model (ids → logits)."""
    from archbench.tracking.mlflow_run import log_torch_model

    if hasattr(task, "generator"):  # GAN: noise → images in [0, 1]
        import torch

        from archbench.tasks.adversarial import ImageSampler

        noise = torch.randn(2, task.noise_dim, generator=torch.Generator().manual_seed(0))
        return log_torch_model(ImageSampler(task.generator).cpu(), noise, serialization_format)
    example = datamodule.example_batch(2)["x"].cpu()
    if hasattr(task, "model"):  # language model: Python control flow in generate → pickle
        return log_torch_model(task.model.cpu(), example, serialization_format or "pickle")
    from archbench.tasks.classification import ProbabilityModel

    return log_torch_model(ProbabilityModel(task.net).cpu(), example, serialization_format)


def run_from_hydra(cfg: DictConfig) -> float | None:
    """Body of the ``@hydra.main`` entry: returns the monitored validation metric (for sweepers)."""
    OmegaConf.resolve(cfg)
    metrics = train(cfg)
    return metrics.get(f"{cfg.callbacks.monitor}_best")


if __name__ == "__main__":
    from archbench.cli.train import main

    main()
