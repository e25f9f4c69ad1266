"""The task plug-in interface: one learning problem, everything ``train()`` needs to know about it.

A task module under ``archbench/tasks/`` defines a ``Task`` subclass and exposes one instance as
``TASK``. ``train()`` asks it which data it accepts, for its datamodule, for the LightningModule
built from the dataset's metadata and the model config, for extra callbacks, and for the model it
logs to MLflow; ``archbench-compare`` asks it for its section of the report. ``train()`` never
names a task.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.errors import ArchbenchError, ConfigError, DataError, IncompatibleError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from archbench.data.store import Meta


@dataclass
class Built:
    """What a task builds for one run: the LightningModule and the nets whose parameters count."""

    module: Any
    nets: list[Any]


@dataclass
class RunResult:
    """One finished run as the report sees it: its folder, ``run.json`` and ``metrics.json``."""

    folder: Path
    run: dict[str, Any]
    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The pair's folder name (``results/train/<key>``, or ``<key>/seed<N>`` for replicates)."""
        name = self.folder.name
        return self.folder.parent.name if name.startswith("seed") and name[4:].lstrip("-").isdigit() else name

    def get(self, name: str, default: float = float("nan")) -> float:
        return float(self.metrics.get(name, default))


def instantiate_net(net_cfg: Any, model_name: str, **sizes: Any):
    """Instantiate a net config (``_target_`` plus arguments) with the dataset's sizes.

    Unknown keys are an error naming the net's valid arguments (a typo is not silently ignored);
    archbench's own errors raised by the constructor surface unchanged, and torch's ValueError for
    a bad value (e.g. a dropout of 1.5 in any net) becomes one ConfigError line naming the model.
    """
    import inspect

    from hydra.utils import get_class, instantiate

    from archbench.errors import ConfigError

    args = {k: v for k, v in dict(net_cfg).items() if k != "_target_"}
    target = get_class(str(net_cfg["_target_"]))
    accepted = inspect.signature(target).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            valid = sorted(set(accepted) - set(sizes))
            raise ConfigError(f"model {model_name}: unknown net argument(s) {unknown} for "
                              f"{target.__name__}; valid: {', '.join(valid)}")
    try:
        with warnings.catch_warnings():  # a size of 0 is refused below, in one line
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            net = instantiate(net_cfg, **sizes, _convert_="all")
    except Exception as err:  # Hydra wraps constructor errors; surface ours unchanged
        cause = err
        while cause.__cause__ is not None and not isinstance(cause, ArchbenchError):
            cause = cause.__cause__
        if isinstance(cause, ArchbenchError):
            raise cause from None
        if isinstance(cause, ValueError):
            raise ConfigError(f"model {model_name}: {cause}") from None
        if isinstance(cause, RuntimeError) and "negative dimension" in str(cause):
            raise _empty_layer(model_name, args) from None
        raise
    if any(parameter.numel() == 0 for parameter in net.parameters()):
        raise _empty_layer(model_name, args)
    return net


def _empty_layer(model_name: str, args: dict[str, Any]):
    """The error for a net built with a layer of size 0 or less, naming the arguments that can be."""
    def below_one(value: Any) -> bool:
        values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        return any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values)

    culprits = ", ".join(f"{key}={value}" for key, value in args.items() if below_one(value))
    return ConfigError(f"model {model_name}: layer sizes must be ≥ 1, got {culprits or 'a layer of size 0'}")


def finished_run(run_dir: str | Path, data_checksum: str | None, setting: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(config, run.json, the net's weights at the checkpoint it tested) of a finished
    ``archbench-train`` run folder trained on exactly the prepared data of ``data_checksum`` (None:
    any data): the frozen nets other runs read (a GAN's scoring classifier, a distillation teacher,
    style transfer's features). Anything else is refused in one line that names ``setting``, the
    config key that pointed here."""
    import torch
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    run_file, config_file = run_dir / "run.json", run_dir / "config.yaml"
    if not run_file.is_file() or not config_file.is_file():
        seeds = sorted(p.name for p in run_dir.glob("seed*") if (p / "run.json").is_file())
        hint = (f"it holds seed replicates: name one, e.g. {run_dir / seeds[0]}" if seeds
                else "train one with archbench-train on the same data first")
        raise DataError(f"{setting}={run_dir}: not a finished archbench-train run folder (no run.json "
                        f"and config.yaml); {hint}")
    run = json.loads(run_file.read_text())
    if run.get("status") != "finished" or not run.get("best_checkpoint"):
        raise ConfigError(f"{setting}={run_dir}: that run has not finished (status {run.get('status')!r})")
    if data_checksum is not None and run.get("data_checksum") != data_checksum:
        raise ConfigError(f"{setting}={run_dir} was trained on other prepared data "
                          f"({str(run.get('data_checksum', '?'))[:19]}… vs this run's {data_checksum[:19]}…)")
    checkpoint = Path(run["best_checkpoint"])
    if not checkpoint.is_file():  # the run directory was moved or cloned elsewhere
        checkpoint = run_dir / "checkpoints" / checkpoint.name
    if not checkpoint.is_file():
        raise DataError(f"{setting}={run_dir}: its tested checkpoint checkpoints/{checkpoint.name} is missing")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return (OmegaConf.load(config_file), run,
            {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})


class Task:
    """Base class of the task plug-ins; subclasses override what differs."""

    name: str = ""
    data_kinds: tuple[str, ...] = ()
    net_key: str = "net"  # the model config's key holding this task's net
    monitor: tuple[str, str] = ("val/loss", "min")  # what callbacks.monitor=auto means for this task
    data_tasks: tuple[str, ...] = ()  # the prepared data's own task must be one of these (if set)
    summary: str = ""  # one line for the report section's heading text
    report_with: str | None = None  # another task whose report section also shows this task's runs
    distills: bool = False  # learns from a teacher run when distill.teacher is set (tasks.distill)
    model_format: str | None = None  # MLflow format of the exported model unless logger.model_format sets
    # one (None: MLflow's default; "pickle" for models whose Python control flow export can't trace)

    def resolve_monitor(self, monitor: str, mode: str) -> tuple[str, str]:
        """``callbacks.monitor``/``mode`` with ``auto`` replaced by this task's own."""
        monitor = self.monitor[0] if monitor == "auto" else monitor
        if mode == "auto":
            mode = self.monitor[1] if monitor == self.monitor[0] else "min"
        return monitor, mode

    # --- building -------------------------------------------------------------------------
    def check(self, cfg: DictConfig, meta: Meta) -> None:
        """Refuse, in one line, data this task cannot learn from."""
        if meta.kind not in self.data_kinds:
            raise IncompatibleError(
                f"task {self.name} (model {cfg.model.name}) needs {' or '.join(self.data_kinds)} "
                f"data; {meta.name} is {meta.kind} data")
        if self.data_tasks and meta.task not in self.data_tasks:
            raise IncompatibleError(
                f"model {cfg.model.name} runs task {self.name}; {meta.name} is {meta.task} data "
                f"(set data.task, or pick a model for {meta.task})")
        if not self.distills and (cfg.get("distill") or {}).get("teacher"):
            raise IncompatibleError(f"distill.teacher is set, but task {self.name} (model {cfg.model.name}) "
                                    f"does not learn from a teacher; only classification does")

    def datamodule(self, cfg: DictConfig, data_dir: Path, meta: Meta):
        from archbench.data.datamodule import TensorDataModule

        data = cfg.data
        return TensorDataModule(data_dir, batch_size=int(data.batch_size),
                                eval_batch_size=int(data.eval_batch_size),
                                layout=str(data.get("layout", "default")),
                                verify_checksum=bool(data.verify_checksum), seed=int(cfg.seed),
                                train_fraction=float(data.get("train_fraction", 1.0)),
                                bucket_batches=int(data.get("bucket_batches", 0)))

    def net_key_for(self, meta: Meta) -> str:
        """The model config's key holding the net for this data (e.g. ``text_net`` for words)."""
        return self.net_key

    def net_sizes(self, meta: Meta) -> dict[str, Any]:
        """Sizes the net gets from the data besides input shape and outputs (e.g. vocabulary)."""
        return {}

    def build_net(self, cfg: DictConfig, input_shape: list[int], meta: Meta):
        key = self.net_key_for(meta)
        if key not in cfg.model:
            on = f" on {meta.kind} data" if key != self.net_key else ""
            raise IncompatibleError(f"model {cfg.model.name} has no {key!r} for task {self.name}{on}; "
                                    f"models that have one: {', '.join(models_with(key))}")
        return instantiate_net(cfg.model[key], cfg.model.name, **self.net_inputs(input_shape, meta))

    def net_inputs(self, input_shape: list[int], meta: Meta) -> dict[str, Any]:
        """What the net's constructor gets from the data: input shape, outputs and ``net_sizes``."""
        return {"input_shape": list(input_shape), "num_classes": self.outputs(meta), **self.net_sizes(meta)}

    def outputs(self, meta: Meta) -> int:
        """Output width of the net (classes, vocabulary, regression targets)."""
        return int(meta.num_classes)

    def build(self, cfg: DictConfig, meta: Meta, datamodule) -> Built:
        raise NotImplementedError

    def callbacks(self, cfg: DictConfig, out_dir: Path) -> list:
        """Callbacks this task adds to the common ones (e.g. sample grids)."""
        return []

    # --- after training -------------------------------------------------------------------
    def export(self, module, datamodule, serialization_format: str | None) -> str:
        """Log the trained model to the active MLflow run (with signature); returns its URI."""
        from archbench.tracking.mlflow_run import log_torch_model

        example = datamodule.example_batch(2)["x"].cpu()
        return log_torch_model(self.exported_model(module).cpu(), example, serialization_format or self.model_format,
                               self.model_metadata(datamodule))

    def exported_model(self, module):
        return module.net

    def model_metadata(self, datamodule) -> dict[str, Any] | None:
        """What the logged model's MLmodel file carries beside it: for a net that reads images or
        table rows, how raw inputs become its inputs (image files: ``data.images.model_inputs``; new
        rows of its own table by column name: ``data.sources.table_file.encode_rows``), for
        ``archbench-predict``. The net itself stays plain (MLflow's pt2 format: no Python of
        archbench's needed to load it)."""
        from archbench.data.images import image_input
        from archbench.data.sources.table_file import table_input

        meta = datamodule.load()
        if meta.kind == "image":
            return {"image_input": image_input(meta.input_shape, meta.normalization,
                                               getattr(datamodule, "layout", "default"))}
        spec = table_input(meta.source, meta.normalization) if meta.kind == "tabular" else None
        return {"table_input": spec} if spec else None

    def cost_inputs(self, module, datamodule):
        """(net, example batch) whose inference cost the report compares; None: not measured."""
        return self.exported_model(module).cpu(), datamodule.example_batch(2)["x"].cpu()

    # --- report ---------------------------------------------------------------------------
    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        """Markdown lines of this task's part of ``reports/comparison.md``."""
        return []


def models_with(key: str) -> list[str]:
    """Model configs (conf/model/*.yaml) that define ``key`` (e.g. ``lm_net``)."""
    import yaml

    from archbench.paths import conf_dir

    names = []
    for path in sorted((conf_dir() / "model").glob("*.yaml")):
        body = yaml.safe_load(path.read_text()) or {}
        body = body.get("model", body)
        if key in body:
            names.append(path.stem)
    return names


def write_json(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
