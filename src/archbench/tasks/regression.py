"""Regression of real-valued targets: MSE on standardised targets; MSE, RMSE, MAE and R² reported in
the target's own units."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, R2Score

from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import lightning_optimizers


class Destandardised(nn.Module):
    """What archbench logs for a regressor: inputs → predictions in the target's own units."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.std + self.mean


class RegressionTask(TaskModule):
    """Loss (MSE on standardised targets) and metrics in original units around any net."""

    def __init__(self, net: nn.Module, target_mean: float = 0.0, target_std: float = 1.0,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.train_metrics = TrainEpochMetrics("loss")
        self._test_pairs: list[torch.Tensor] = []  # (prediction, target) rows of the last test
        self.metrics = nn.ModuleDict({
            split: nn.ModuleDict({"loss": MeanMetric(), "mse": MeanSquaredError(),
                                  "mae": MeanAbsoluteError(), "r2": R2Score()})
            for split in ("val", "test")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(len(x), -1).squeeze(-1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self._predict(x), y)
        self.train_metrics.update_mean("loss", check_finite(self, loss), len(y))
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        """Update and log the split's metrics; returns ``(prediction, target)`` rows in the target's units."""
        x, y = batch
        pred = self._predict(x)
        metrics = self.metrics[split]
        metrics["loss"].update(F.mse_loss(pred, y), weight=len(y))
        # original units: y·std + mean
        pred_units, y_units = pred * self.target_std + self.target_mean, y * self.target_std + self.target_mean
        for name in ("mse", "mae", "r2"):
            metrics[name].update(pred_units, y_units)
        for name, metric in metrics.items():
            self.log(f"{split}/{name}", metric, prog_bar=name == "loss", batch_size=len(y))
        return torch.stack([pred_units.float(), y_units.float()], dim=1)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._test_pairs.append(self._evaluate(batch, "test").detach().cpu())

    def on_test_epoch_start(self) -> None:
        self._test_pairs = []

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """test_predictions.npz (predictions and targets in the target's units, in test order), for
        the report's intervals; only from a single process, which saw the whole test split."""
        if self.trainer.world_size > 1 or not self._test_pairs:
            return []
        import numpy as np

        pairs = torch.cat(self._test_pairs).numpy()
        path = out_dir / "test_predictions.npz"
        np.savez_compressed(path, predictions=pairs[:, 0], targets=pairs[:, 1])
        return [path]

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


class Regression(Task):
    """Tables (or any fixed-shape input) → one real-valued target."""

    name = "regression"
    data_kinds = ("tabular", "image", "sequence")
    monitor = ("val/loss", "min")
    data_tasks = ("regression",)

    def outputs(self, meta) -> int:
        return 1

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        net = self.build_net(cfg, datamodule.input_shape, meta)
        target = meta.target or {}
        module = RegressionTask(net, float(target.get("mean", 0.0)), float(target.get("std", 1.0)),
                                optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler))
        return Built(module, [net])

    def exported_model(self, module) -> nn.Module:
        return Destandardised(module.net, module.target_mean, module.target_std)

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.replicates import plus_minus, seeds_cell

        runs = sorted(runs, key=lambda r: (r.run["data"], -r.get("test/r2")))
        errors = {id(r): _squared_errors(r) for r in runs}  # each run's predictions read once
        versus = _versus_best(runs, errors)
        lines = ["## Regression", "",
                 "Errors on the held-out test split in the target's own units (models selected on the",
                 "validation MSE): mean ± std over seeds; the RMSE's 95 % interval from a two-level",
                 "bootstrap over seeds and test examples, and each model against the dataset's lowest RMSE",
                 "(paired bootstrap of the RMSE difference on the shared test examples, pooled over seeds;",
                 "p-values Holm-corrected across the dataset's comparisons, * = significant at 5 %).", "",
                 "| dataset | model | seeds | test RMSE | 95 % CI | Δ RMSE vs best [95 % CI] | p (Holm) | test MAE "
                 "| test R² | parameters | epochs | train s |",
                 "| --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in runs:
            reference = bool(r.run.get("reference"))
            model = f"*{r.run['model']}*" if reference else r.run["model"]
            size = "–" if reference else f"{int(r.get('parameters', 0)):,}"
            epochs = "–" if reference else str(int(r.get("epochs", 0)))
            delta, p_value = versus.get(id(r), ("–", ""))
            lines.append(f"| {r.run['data']} | {model} | {seeds_cell(r)} | {_rmse(r)} | {_rmse_interval(errors[id(r)])} | "
                         f"{delta} | {p_value} | {plus_minus(r, 'test/mae', digits=2)} | "
                         f"{plus_minus(r, 'test/r2', digits=3)} | {size} | {epochs} | {r.get('train_seconds'):.1f} |")
        if any(r.run.get("reference") for r in runs):
            lines += ["", "*Italic rows*: scikit-learn references fitted on the same prepared train+val "
                      "data and scored on the same test split."]
        return lines + [""]


def _squared_errors(row: RunResult):
    """``(seeds, examples)`` squared test errors of a row's seeds, or None without all of them."""
    import numpy as np

    paths = [r.folder / "test_predictions.npz" for r in row.extra.get("runs", [])]
    if not paths or not all(p.is_file() for p in paths):
        return None
    errors = []
    for path in paths:
        with np.load(path) as saved:
            errors.append((saved["predictions"] - saved["targets"]) ** 2)
    return np.stack(errors) if len({e.size for e in errors}) == 1 else None


def _versus_best(runs: list[RunResult], errors: dict[int, Any]) -> dict[int, tuple[str, str]]:
    """Per trained row (by ``id``): its RMSE minus its dataset's lowest, with the paired bootstrap's
    interval, and the Holm-corrected p-value ("best" for the lowest itself); ``errors``: each row's
    ``_squared_errors``."""
    from archbench.report import stats

    cells: dict[int, tuple[str, str]] = {}
    for data in dict.fromkeys(r.run["data"] for r in runs):
        rows = [(r, e) for r in runs if r.run["data"] == data and not r.run.get("reference")
                for e in [errors[id(r)]] if e is not None]
        if len(rows) < 2 or len({e.shape[1] for _, e in rows}) != 1:
            continue
        (best, best_errors), *others = sorted(rows, key=lambda pair: pair[1].mean())
        cells[id(best)] = ("best", "")
        differences = [stats.paired_rmse_bootstrap(e, best_errors) for _, e in others]
        for (row, _), diff, p in zip(others, differences, stats.holm([d.p_value for d in differences]), strict=True):
            cells[id(row)] = (f"+{diff.mean:.2f} [{diff.low:+.2f}, {diff.high:+.2f}]",
                              f"{p:.3f}" + (" *" if p < stats.ALPHA else ""))
    return cells


def _rmse(row: RunResult) -> str:
    """The root of the seeds' mean MSE, ± the standard deviation of the per-seed RMSEs."""
    seeds = [math.sqrt(r.get("test/mse")) for r in row.extra.get("runs", [])]
    spread = f" ± {statistics.stdev(seeds):.2f}" if len(seeds) > 1 else ""
    return f"{math.sqrt(row.get('test/mse')):.2f}{spread}"


def _rmse_interval(errors) -> str:
    """95 % interval of the RMSE: a row's squared test errors (``_squared_errors``), resampled over
    seeds and test examples (``report.stats.mean_ci``); "–" without every seed's predictions."""
    from archbench.report.stats import mean_ci

    if errors is None:
        return "–"
    low, high = mean_ci(errors)
    return f"{math.sqrt(low):.2f}–{math.sqrt(high):.2f}"


TASK = Regression()
