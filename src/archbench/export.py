"""A logged model's forward as a file other runtimes load: ONNX (run by onnxruntime) or TorchScript
(where ONNX cannot express the model), each checked against PyTorch on the same batch.

What is exported is the model archbench logs (``Task.exported_model``): a classifier's inputs →
class probabilities, a language model's ids → next-character logits (one step; the sampling loop
around it stays in Python). The batch axis, and the length axis of id inputs, stay dynamic.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from archbench.errors import ConfigError

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
EXPORTABLE_TASKS = ("classification", "language_model", "regression")


@dataclass
class Parity:
    """How far the exported file's outputs are from PyTorch's on one batch."""

    format: str
    batch_size: int
    max_abs_diff: float
    max_rel_diff: float
    same_argmax: float  # fraction of rows whose top class agrees (classifiers, language models)
    export_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _dynamic_shapes(example: torch.Tensor) -> tuple[dict[int, object]]:
    dims: dict[int, object] = {0: torch.export.Dim("batch", min=1, max=1 << 16)}
    if not example.is_floating_point() and example.dim() >= 2:  # token ids: any length
        dims[1] = torch.export.Dim("length", min=1, max=1 << 16)
    return (dims,)


def in_eval_mode(model: nn.Module) -> nn.Module:
    """``model`` in eval mode (a ``torch.export`` module, as MLflow's pt2 format loads, has no
    train/eval switch: it was exported in eval mode)."""
    try:
        return model.eval()
    except NotImplementedError:
        return model


@contextmanager
def _quiet_exporter():
    """The exporter's notes on operators of packages we do not use (torchvision's) and its
    deprecation warnings stay out of the user's terminal; failures still raise."""
    import logging
    import warnings

    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*training mode.*")  # pt2 modules: already eval
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")  # nn.RNN's weights
            yield
    finally:
        registration.setLevel(level)


def export_forward(model: nn.Module, example: torch.Tensor, fmt: str, path: Path) -> Path:
    """Write ``model``'s forward on inputs like ``example`` to ``path`` in ``fmt``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    model = in_eval_mode(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), _quiet_exporter():
        if fmt == "onnx":
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                        dynamic_shapes=_dynamic_shapes(example),
                                        input_names=["input"], output_names=["output"])
            program.save(str(path))
        else:
            torch.jit.save(torch.jit.trace(model, (example,), check_trace=False), str(path))
    return path


def run_exported(path: Path, fmt: str, threads: int | None = None):
    """A callable running the exported file on a batch (numpy out): onnxruntime or TorchScript."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch.numpy()})[0]
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(batch).numpy()

    return run


def check_parity(model: nn.Module, path: Path, fmt: str, batch: torch.Tensor,
                 export_seconds: float = float("nan")) -> Parity:
    """Outputs of PyTorch and of the exported file on ``batch``, compared."""
    with torch.no_grad():
        expected = in_eval_mode(model)(batch).numpy()
    got = run_exported(path, fmt)(batch)
    if got.shape != expected.shape:
        raise ConfigError(f"the exported {fmt} model returns shape {got.shape}, PyTorch {expected.shape}")
    diff = np.abs(got - expected)
    same = float((got.argmax(-1) == expected.argmax(-1)).mean()) if expected.ndim >= 2 else float("nan")
    return Parity(fmt, int(batch.shape[0]), float(diff.max()),
                  float((diff / np.maximum(np.abs(expected), 1e-6)).max()), same, export_seconds)


def other_shape(batch: torch.Tensor) -> torch.Tensor:
    """Inputs of another shape along the dynamic axes, on which an exported file must agree as
    well (a graph fixed to one shape fails there): fewer rows; token ids also shorter, with every
    position a real token (other lengths than the example's)."""
    rows = batch[: max(1, min(len(batch) - 1, 3))]
    if not batch.is_floating_point() and batch.dim() >= 2 and batch.shape[1] > 1:
        rows = rows[:, : max(1, batch.shape[1] * 2 // 3)]
        rows = torch.where(rows == 0, torch.ones_like(rows), rows)  # <pad> (id 0) → a real id
    return rows


def export_with_parity(model: nn.Module, batch: torch.Tensor, fmt: str, out_dir: Path,
                       stem: str = "model") -> tuple[Path, Parity, str | None]:
    """Export (``fmt`` ``auto``: ONNX, else TorchScript with the reason ONNX failed) and check it
    on ``batch`` and on inputs of another shape (``other_shape``).

    Returns the file, its parity on ``batch`` and the ONNX failure that forced TorchScript."""
    formats = ["onnx", "torchscript"] if fmt == "auto" else [fmt]
    example = batch[: max(2, min(len(batch), 8))]  # batch 1 would fix the batch axis at 1
    other = other_shape(batch)
    reason = None
    for candidate in formats:
        started = time.perf_counter()
        path = out_dir / f"{stem}{SUFFIX[candidate]}"
        try:
            export_forward(model, example, candidate, path)
            seconds = time.perf_counter() - started
            reshaped = check_parity(model, path, candidate, other)
            if not reshaped.max_abs_diff < 1e-3:
                raise ValueError(f"the {candidate} file holds one input shape only (off by "
                                 f"{reshaped.max_abs_diff:.2g} on inputs of shape {tuple(other.shape)})")
        except ConfigError:
            raise
        except Exception as err:  # the exporter's own failure, or a graph fixed to one shape
            reason = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
            if candidate == formats[-1]:
                raise ConfigError(f"cannot export this model to {' or '.join(formats)}: {reason}") from err
            continue
        return path, check_parity(model, path, candidate, batch, seconds), reason
    raise AssertionError("unreachable")


def first_test_batch(cfg, size: int | None = None) -> torch.Tensor:
    """The first batch of the test split of the run configured by ``cfg`` (its logged
    ``config.yaml``), as the run's own test loader batches it (prepared if missing); ``size``:
    that many inputs instead of ``data.eval_batch_size``."""
    from archbench.config import to_dict
    from archbench.data.prepare import ensure_prepared
    from archbench.tasks import load_task, task_name

    meta, data_dir = ensure_prepared(to_dict(cfg.data))
    task = load_task(task_name(cfg.model, cfg.data, meta.task))
    datamodule = task.datamodule(cfg, data_dir, meta)
    if size:
        datamodule.eval_batch_size = size
    datamodule.setup("test")
    return next(iter(datamodule.test_dataloader()))[0]
