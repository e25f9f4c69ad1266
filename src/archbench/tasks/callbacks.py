"""Callbacks archbench adds to Lightning's own."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


class DeterministicWithoutFill(pl.Callback):
    """Keeps ``trainer.deterministic``'s kernels but switches off torch's NaN fill of every new
    tensor (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging aid that costs
    ~10 % of an LSTM step on CPU and changes no bit (measured; tests/test_speed.py). Set in
    ``setup``, so in every process, after the Trainer turned deterministic mode on; restored after."""

    def __init__(self) -> None:
        self._previous: bool | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import torch.utils.deterministic

        self._previous = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = False

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import torch.utils.deterministic

        if self._previous is not None:
            torch.utils.deterministic.fill_uninitialized_memory = self._previous
            self._previous = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Lightning skips ``teardown`` when a run raises (a NaN loss, Ctrl-C): restore here too, or
        every later training in the process would run without the fill it asked for."""
        self.teardown(trainer, pl_module, "exception")


class QuietProcess(pl.Callback):
    """archbench's console filters (``archbench.console``) in every process that trains: a
    ``ddp_spawn`` rank starts afresh, without the filters its parent set, and printed Lightning's
    known noise once per rank."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from archbench.console import quiet_dependencies

        quiet_dependencies(self.verbose)


class EpochCurves(pl.Callback):
    """One CSV row per epoch (train and validation metrics side by side) for ``dvc plots``.

    Lightning's CSVLogger writes one sparse row per logging call; DVC plots want one row per epoch.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        row = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith(("train/", "val/")):
                row[key] = round(float(value), 6)
        self.rows.append(row)
        self.write()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:  # a resumed, already finished run trains no epoch: still write
            self.write()

    def state_dict(self) -> dict:
        return {"rows": self.rows}  # so a resumed run keeps the epochs before the kill

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))

    def write(self) -> None:
        if not self.rows:
            return
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)


class FitVerdict(pl.Callback):
    """A callback that may end the run after ``fit`` (before testing) by raising
    ``archbench.errors.RunStopped``. ``train()`` calls ``after_fit`` in the process that started the
    fit, so the verdict holds however the epochs ran (in-process, DDP, spawned children)."""

    def after_fit(self, epochs: int) -> None:
        """Raise ``RunStopped`` to stop the run here."""


class RngStateInCheckpoint(pl.Callback):
    """Store torch's global RNG state in each checkpoint and restore it on resume, so a resumed
    run shuffles, drops out and augments exactly as the uninterrupted run would have."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])


class ConfigStamp(pl.Callback):
    """Write the run's fingerprint (config and code, ``archbench.resume.run_fingerprint``) into
    every checkpoint, so only the config and code that wrote a checkpoint can resume it."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        from archbench.resume import CONFIG_STAMP_KEY

        checkpoint[CONFIG_STAMP_KEY] = self.fingerprint


class TrainingClock(pl.Callback):
    """Store the run's training wall time so far in each checkpoint, so a resumed run reports the
    whole of it (``prior_seconds`` from the checkpoint it resumes, plus this fit's time)."""

    KEY = "archbench_train_seconds"

    def __init__(self, prior_seconds: float = 0.0) -> None:
        self.prior_seconds, self.started = float(prior_seconds), time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()  # in the process that trains (a ddp_spawn child too)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        checkpoint[self.KEY] = self.prior_seconds + time.perf_counter() - self.started

    @classmethod
    def seconds_in(cls, checkpoint_path: str | Path | None) -> float:
        """Training seconds recorded in a checkpoint (0 without one, or from before this callback)."""
        if not checkpoint_path or not Path(checkpoint_path).is_file():
            return 0.0
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        return float(state.get(cls.KEY, 0.0))


def save_grid(images, path: str | Path, columns: int = 10) -> Path:
    """Tile images ``(N, C, H, W)`` in [0, 1] into one PNG (grey for one channel).

    Written with matplotlib: torchvision's ``save_image`` would make torchvision a dependency.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = images.detach().cpu().clamp(0, 1)
    scale = max(1, 28 // images.shape[-1])  # 8×8 digits drawn at 4× so the grid is legible
    images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    n, channels, height, width = images.shape
    rows = -(-n // columns)
    canvas = torch.ones(channels, rows * (height + 1) + 1, columns * (width + 1) + 1)
    for i, image in enumerate(images):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        canvas[:, top : top + height, left : left + width] = image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = canvas[0].numpy() if channels == 1 else canvas.permute(1, 2, 0).numpy()
    plt.imsave(path, array, cmap="gray" if channels == 1 else None, vmin=0, vmax=1)
    return path


class SampleGrid(pl.Callback):
    """Every ``every_n_epochs`` validation epochs: a grid of samples from fixed noise, written to
    ``<out_dir>/samples/epoch_NNN.png`` and logged to the MLflow run under ``samples/``."""

    def __init__(self, out_dir: str | Path, every_n_epochs: int = 5, count: int = 100) -> None:
        self.out_dir, self.every_n_epochs, self.count = Path(out_dir), max(1, every_n_epochs), count

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        if (epoch + 1) % self.every_n_epochs and epoch + 1 != trainer.max_epochs:
            return
        unit = pl_module.space.to_unit(pl_module.sample(self.count, pl_module.seed + 2))
        path = save_grid(unit, self.out_dir / "samples" / f"epoch_{epoch + 1:03d}.png")
        logger = trainer.logger
        if logger is not None and hasattr(logger, "run_id"):
            logger.experiment.log_artifact(logger.run_id, str(path), "samples")


class TestOutputs(pl.Callback):
    """After testing, on rank 0 of whichever process tested (the spawned rank under ddp_spawn), let
    the task write its files (``test_outputs``) into the run directory and log them to MLflow."""

    def __init__(self, out_dir: str | Path, class_names: list[str]) -> None:
        self.out_dir, self.class_names = Path(out_dir), list(class_names)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or not hasattr(pl_module, "test_outputs"):
            return
        paths = pl_module.test_outputs(self.out_dir, self.class_names)
        logger = trainer.logger
        if logger is not None and hasattr(logger, "run_id"):
            for path in paths:
                logger.experiment.log_artifact(logger.run_id, str(path))
