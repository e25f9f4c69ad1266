"""Rating prediction from (user, item) pairs: MSE around the training mean; RMSE and MAE reported
on predictions clipped to the rating scale (as Surprise does), the model logged as a recommender."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError

from archbench.errors import ConfigError
from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import KeepsTestRows, TaskModule
from archbench.tasks.optim import lightning_optimizers


class Recommender(nn.Module):
    """What archbench logs for a recommender: ``(N, 2)`` contiguous (user, item) ids → predicted
    ratings (rating task) or interaction probabilities (ranking), with the raw MovieLens ids,
    titles and each user's training items, so ``top_k`` answers in the dataset's own ids."""

    def __init__(self, net: nn.Module, objective: str, user_ids: list[int], item_ids: list[int],
                 titles: list[str], seen: torch.Tensor, rating: dict[str, float]) -> None:
        super().__init__()
        self.net, self.objective, self.titles = net, objective, list(titles)
        self.rating = {k: float(v) for k, v in rating.items()}
        self.register_buffer("user_ids", torch.as_tensor(user_ids, dtype=torch.long))
        self.register_buffer("item_ids", torch.as_tensor(item_ids, dtype=torch.long))
        self.register_buffer("seen", seen.to(torch.long))  # (M, 2) training pairs

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        score = self.net(pairs)
        if self.objective == "ranking":
            return torch.sigmoid(score)
        return (score + self.rating["mean"]).clamp(self.rating["min"], self.rating["max"])

    def user_index(self, raw_user: int) -> int:
        return _index_of(self.user_ids, raw_user, "user")

    def item_index(self, raw_item: int) -> int:
        return _index_of(self.item_ids, raw_item, "item")

    def seen_items(self, user: int) -> torch.Tensor:
        """The contiguous ids of the items a user (contiguous id) had in training."""
        return self.seen[self.seen[:, 0] == user, 1]

    @torch.no_grad()
    def top_k(self, raw_user: int, k: int = 10, exclude_seen: bool = True) -> list[tuple[int, str, float]]:
        """The ``k`` best-scored items for a user: (raw item id, title, score); fewer when fewer are
        left once the user's training items are excluded."""
        user = self.user_index(raw_user)
        items = torch.arange(len(self.item_ids))
        scores = self(torch.stack([torch.full_like(items, user), items], dim=1))
        if exclude_seen:
            scores[self.seen_items(user)] = -float("inf")
        best = scores.topk(min(int(k), int(torch.isfinite(scores).sum()))).indices.tolist()
        return [(int(self.item_ids[i]), self.titles[i] if i < len(self.titles) else "", float(scores[i]))
                for i in best]


def _index_of(ids: torch.Tensor, raw: int, what: str) -> int:
    """The contiguous index of a raw dataset id, refused in one line naming the known range."""
    found = (ids == int(raw)).nonzero()
    if not len(found):
        raise ConfigError(f"unknown {what} {raw}; known {what}s: {len(ids)} ids from {int(ids.min())} to {int(ids.max())}")
    return int(found[0, 0])


class RatingTask(KeepsTestRows, TaskModule):
    """MSE on ratings (the net predicts the residual from the training mean); each test rating's
    clipped prediction and target kept (``test_predictions.npz``)."""

    test_row_names = ("predictions", "targets")

    def __init__(self, net: nn.Module, rating: dict[str, float], optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net, self.rating = net, {k: float(v) for k, v in rating.items()}
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.train_metrics = TrainEpochMetrics("loss")
        self.metrics = nn.ModuleDict({split: nn.ModuleDict({
            "loss": MeanMetric(), "rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()})
            for split in ("val", "test")})

    def predict(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.net(pairs) + self.rating["mean"]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self.predict(x), y)
        self.train_metrics.update_mean("loss", check_finite(self, loss), len(y))
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Update and log the split's metrics; returns the clipped predictions and the ratings."""
        x, y = batch
        predicted = self.predict(x)
        clipped = predicted.clamp(self.rating["min"], self.rating["max"])
        metrics = self.metrics[split]
        metrics["loss"].update(F.mse_loss(predicted, y), weight=len(y))
        metrics["rmse"].update(clipped, y)
        metrics["mae"].update(clipped, y)
        for name, metric in metrics.items():
            self.log(f"{split}/{name}", metric, prog_bar=name == "rmse", batch_size=len(y))
        return clipped, y

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.keep_test_rows(*self._evaluate(batch, "test"))

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


class Rating(Task):
    """(user, item) → rating: matrix factorisation and NCF nets on explicit ratings."""

    name = "rating"
    data_kinds = ("interactions",)
    data_tasks = ("rating",)
    net_key = "rec_net"
    monitor = ("val/rmse", "min")
    model_format = "pickle"  # the recommender carries ids and titles beside the net

    def datamodule(self, cfg, data_dir: Path, meta):
        from archbench.data.recommend import InteractionsDataModule

        data = cfg.data
        return InteractionsDataModule(data_dir, batch_size=int(data.batch_size),
                                      eval_batch_size=int(data.eval_batch_size),
                                      negatives=int(data.get("negatives_train", 4)),
                                      verify_checksum=bool(data.verify_checksum), seed=int(cfg.seed))

    def net_sizes(self, meta) -> dict[str, Any]:
        return {"num_users": int(meta.extra["num_users"]), "num_items": int(meta.extra["num_items"])}

    def net_inputs(self, input_shape, meta) -> dict[str, Any]:
        return self.net_sizes(meta)  # (user, item) pairs: no input shape or class count

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        net = self.build_net(cfg, datamodule.input_shape, meta)
        module = RatingTask(net, meta.extra["rating"], optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler))
        return Built(module, [net])

    def exported_model(self, module, datamodule=None) -> Recommender:
        datamodule = datamodule or module.trainer.datamodule
        meta = datamodule.meta
        titles = titles_of(datamodule.data_dir)
        positives = datamodule.splits["train"]
        seen = positives.positives if hasattr(positives, "positives") else positives.x
        return Recommender(module.net, self.name, meta.extra["user_ids"], meta.extra["item_ids"], titles,
                           seen, meta.extra["rating"])

    def export(self, module, datamodule, serialization_format: str | None) -> str:
        from archbench.tracking.mlflow_run import log_torch_model

        example = datamodule.splits["val"].x[:2, :2].clone()
        model = self.exported_model(module, datamodule).cpu().eval()
        return log_torch_model(model, example, serialization_format or self.model_format)

    def cost_inputs(self, module, datamodule):
        return None  # the cost axes compare classifiers and regressors on fixed-size inputs

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.paired import (
            interval,
            pooled_rmse,
            seed_arrays,
            squared_errors,
            versus_best,
        )
        from archbench.report.replicates import plus_minus, seeds_cell
        from archbench.report.stats import paired_rmse_bootstrap

        runs = sorted(runs, key=lambda r: (r.run["data"], r.get("test/rmse")))
        errors = {id(r): seed_arrays(r, squared_errors) for r in runs}
        versus = versus_best(runs, errors, paired_rmse_bootstrap, lower_is_better=True, digits=3)
        lines = ["## Rating prediction", "",
                 "Ratings of held-out (user, item) pairs (a random 10 % of the ratings; models selected on",
                 "another 10 %), predictions clipped to the rating scale. Lower is better. Mean ± std over",
                 "seeds; the RMSE's 95 % interval from a two-level bootstrap over seeds and test ratings, and",
                 "each model against the dataset's lowest RMSE (paired bootstrap on the shared test ratings,",
                 "pooled over seeds; p Holm-corrected, * = significant at 5 %).", "",
                 "| dataset | model | seeds | test RMSE | 95 % CI | Δ RMSE vs best [95 % CI] | p (Holm) | test MAE "
                 "| parameters | epochs | train s |",
                 "| --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in runs:
            delta, p_value = versus.get(id(r), ("–", ""))
            rmse = pooled_rmse([s.get("test/rmse") for s in r.extra.get("runs", [r])], digits=3)
            lines.append(f"| {r.run['data']} | {r.run['model']} | {seeds_cell(r)} | {rmse} | "
                         f"{interval(errors[id(r)], digits=3, transform=math.sqrt)} | {delta} | {p_value} | "
                         f"{plus_minus(r, 'test/mae', digits=3)} | {int(r.get('parameters', 0)):,} | "
                         f"{int(r.get('epochs', 0))} | {r.get('train_seconds'):.1f} |")
        return lines + [""]


def titles_of(data_dir: Path) -> list[str]:
    """Titles by contiguous item id from a prepared directory's ``items.tsv`` (empty if none)."""
    path = Path(data_dir) / "items.tsv"
    if not path.is_file():
        return []
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t", 2)[2] if row.count("\t") >= 2 else "" for row in rows]


TASK = Rating()
