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
                              verify_checksum=bool(data.verify_checksum))
    return TensorDataModule(data.dir, batch_size=int(data.batch_size),
                            eval_batch_size=int(data.eval_batch_size), layout=data.layout,
                            verify_checksum=bool(data.verify_checksum))


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

    from archbench.tasks.callbacks import EpochCurves, RngStateInCheckpoint

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
    if cb.progress_bar == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif cb.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    return callbacks, checkpoint if cb.checkpoint.enabled else None


def _trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = to_dict(cfg.trainer)
    if cfg.callbacks.progress_bar == "none":
        kwargs["enable_progress_bar"] = False
    return kwargs


def write_confusion(confusion, class_names: list[str], out_dir: Path) -> tuple[Path, Path]:
    """``confusion.csv`` (one row per test sample pair count, for dvc plots) and a PNG heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion.numpy()
    csv_path = out_dir / "confusion.csv"
    with csv_path.open("w") as handle:
        handle.write("actual,predicted\n")
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                handle.writelines(f"{class_names[i]},{class_names[j]}\n" for _ in range(int(count)))
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(class_names), 1 + 0.4 * len(class_names)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=90 if len(class_names) > 10 else 0)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, int(count), ha="center", va="center", fontsize=7,
                    color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    png_path = out_dir / "confusion.png"
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path


def train(cfg: DictConfig, parent_run_id: str | None = None) -> dict[str, float]:
    """Prepare (if needed), fit, test, track and return the run's metrics."""
    validate(cfg)
    import mlflow
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from archbench.nets.common import count_parameters
    from archbench.resume import find_resume_point, start_fresh
    from archbench.tracking.mlflow_run import log_metrics, training_run

    point = find_resume_point(cfg)
    out_dir = point.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    meta = ensure_prepared(to_dict(cfg.data))
    datamodule = build_datamodule(cfg, meta)
    datamodule.load()
    net = build_net(cfg.model, datamodule.input_shape, meta.num_classes, meta.kind == "text")
    task = build_task(cfg, net, meta)
    n_params = count_parameters(net)
    monitor, mode = cfg.callbacks.monitor, cfg.callbacks.mode
    tags = {"data": meta.name, "model": cfg.model.name, "data_checksum": meta.checksum,
            "data_layout": str(meta.source.get("layout", "")), "output_dir": str(out_dir)}
    start_fresh(point, cfg)
    with training_run(cfg, tags, parent_run_id, resume_run_id=point.run_id) as run:
        started_summary = {"data": meta.name, "model": cfg.model.name, "run_id": run.info.run_id,
                           "status": "running"}
        (out_dir / "run.json").write_text(json.dumps(started_summary, indent=2) + "\n")
        mlflow.log_params({"data.meta.input_shape": meta.input_shape, "data.meta.splits": meta.splits,
                           "model.parameters": n_params})
        logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name,
                              tracking_uri=cfg.logger.tracking_uri, run_id=run.info.run_id)
        callbacks, checkpoint = build_callbacks(cfg, out_dir)
        trainer = pl.Trainer(**_trainer_kwargs(cfg), logger=logger, callbacks=callbacks,
                             default_root_dir=str(out_dir))
        started = time.perf_counter()
        if point.checkpoint is not None:
            mlflow.set_tag("resumed_from", str(point.checkpoint))
        trainer.fit(task, datamodule=datamodule,
                    ckpt_path=str(point.checkpoint) if point.checkpoint else None)
        train_seconds = time.perf_counter() - started
        best_path = checkpoint.best_model_path if checkpoint is not None else ""
        trainer.test(task, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)
        results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        best_score = checkpoint.best_model_score if checkpoint is not None else None
        metrics = {
            **results,
            f"{monitor}_best": float(best_score) if best_score is not None else float("nan"),
            "epochs": float(trainer.current_epoch),
            "train_seconds": round(train_seconds, 3),
            "parameters": float(n_params),
        }
        log_metrics({k: v for k, v in metrics.items() if k != "parameters"})
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        summary = {**started_summary, "status": "finished",
                   "experiment_id": run.info.experiment_id, "tracking_uri": cfg.logger.tracking_uri,
                   "best_checkpoint": best_path, "data_checksum": meta.checksum}
        if getattr(task, "confusion", None) is not None:
            _, png = write_confusion(task.confusion, meta.class_names, out_dir)
            mlflow.log_artifact(str(png))
        if getattr(task, "samples", None):
            (out_dir / "sample.txt").write_text(task.samples[-1])
        if cfg.logger.log_model and trainer.global_rank == 0:
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
