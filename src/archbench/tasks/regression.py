"""Regression of real-valued targets: MSE on standardised targets; MSE, RMSE, MAE and R² reported in
the target's own units."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, R2Score

from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import KeepsTestRows, TaskModule
from archbench.tasks.optim import lightning_optimizers


class Destandardised(nn.Module):
    """What archbench logs for a regressor: inputs → predictions in the target's own units."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.std + self.mean


class RegressionTask(KeepsTestRows, TaskModule):
    """Loss (MSE on standardised targets) and metrics in original units around any net; each test
    example's prediction and target kept (``test_predictions.npz``)."""

    test_row_names = ("predictions", "targets")

    def __init__(self, net: nn.Module, target_mean: float = 0.0, target_std: float = 1.0,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.train_metrics = TrainEpochMetrics("loss")
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

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Update and log the split's metrics; returns the predictions and targets in the target's units."""
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
        return pred_units, y_units

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.keep_test_rows(*self._evaluate(batch, "test"))

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
        from archbench.report.paired import (
            interval,
            pooled_rmse,
            row_arrays,
            squared_errors,
            versus_best,
        )
        from archbench.report.replicates import plus_minus, seeds_cell
        from archbench.report.stats import paired_rmse_bootstrap

        runs = sorted(runs, key=lambda r: (r.run["data"], -r.get("test/r2")))
        errors = {id(r): row_arrays(r, squared_errors, "squared_errors") for r in runs}  # each read once
        versus = versus_best(runs, errors, paired_rmse_bootstrap, lower_is_better=True)
        lines = ["## Regression", "",
                 "Errors on the held-out test split in the target's own units (models selected on the",
                 "validation MSE): mean ± std over seeds; the RMSE's 95 % interval from a two-level",
                 "bootstrap over seeds and test examples, and each model against the dataset's lowest RMSE",
                 "(paired bootstrap of the RMSE difference on the shared test examples, pooled over seeds;",
                 "p-values Holm-corrected across the dataset's comparisons, * = significant at 5 %). Reference",
                 "rows: one fit, so their interval is over test examples; their tests are Holm-corrected among",
                 "themselves.", "",
                 "| dataset | model | seeds | test RMSE | 95 % CI | Δ RMSE vs best [95 % CI] | p (Holm) | test MAE "
                 "| test R² | parameters | epochs | train s |",
                 "| --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in runs:
            reference = bool(r.run.get("reference"))
            model = f"*{r.run['model']}*" if reference else r.run["model"]
            size = "–" if reference else f"{int(r.get('parameters', 0)):,}"
            epochs = "–" if reference else str(int(r.get("epochs", 0)))
            delta, p_value = versus.get(id(r), ("–", ""))
            rmse = pooled_rmse([math.sqrt(s.get("test/mse")) for s in r.extra.get("runs", [r])])
            lines.append(f"| {r.run['data']} | {model} | {seeds_cell(r)} | {rmse} | "
                         f"{interval(errors[id(r)], transform=math.sqrt)} | {delta} | {p_value} | "
                         f"{plus_minus(r, 'test/mae', digits=2)} | {plus_minus(r, 'test/r2', digits=3)} | {size} | "
                         f"{epochs} | {r.get('train_seconds'):.1f} |")
        if any(r.run.get("reference") for r in runs):
            lines += ["", "*Italic rows*: scikit-learn references fitted on the same prepared train+val "
                      "data and scored on the same test split."]
        return lines + [""]


TASK = Regression()
