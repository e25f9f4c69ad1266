"""Classification of images, sequences and tables by any net that maps inputs to class scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from archbench.errors import ConfigError, NonFiniteLossError
from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, running_mean
from archbench.tasks.optim import lightning_optimizers

LOSSES = ("cross_entropy", "perceptron", "mse")


def scores_to_probs(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from scores: softmax, or sigmoid for a single two-class output."""
    if scores.shape[-1] == 1:
        positive = torch.sigmoid(scores)
        return torch.cat([1 - positive, positive], dim=-1)
    return scores.softmax(dim=-1)


def random_shift(x: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """Translate each image (N, C, H, W) or sequence (N, C, L) by up to ``max_fraction`` of its size,
    independently per sample, repeating border values (one vectorised ``grid_sample``)."""
    planar = x if x.dim() == 4 else x.unsqueeze(2)
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    # affine_grid coordinates span [-1, 1]: a shift of f·size is 2f
    theta[:, 0, 2] = (torch.rand(n, device=x.device) * 2 - 1) * 2 * max_fraction
    if x.dim() == 4:
        theta[:, 1, 2] = (torch.rand(n, device=x.device) * 2 - 1) * 2 * max_fraction
    grid = F.affine_grid(theta, list(planar.shape), align_corners=False)
    shifted = F.grid_sample(planar, grid, padding_mode="border", align_corners=False)
    return shifted if x.dim() == 4 else shifted.squeeze(2)


class ProbabilityModel(nn.Module):
    """What archbench logs as a model: inputs → class probabilities (shape ``(N, classes)``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scores_to_probs(self.net(x))


def classification_loss(name: str, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (binary for one output), the perceptron criterion, or MSE on probabilities."""
    classes = max(2, scores.shape[-1])
    if name == "cross_entropy":
        if scores.shape[-1] == 1:
            return F.binary_cross_entropy_with_logits(scores.squeeze(-1), target.float())
        return F.cross_entropy(scores, target)
    if name == "perceptron":
        # -t·s for each unit with t·s ≤ 0, t ∈ {-1, +1} (one-vs-rest): its gradient step is
        # w ← w + η·t·x, taken only for the units that got the sample wrong.
        if scores.shape[-1] == 1:
            signed = (2 * target.float() - 1).unsqueeze(-1)
        else:
            signed = 2 * F.one_hot(target, classes).float() - 1
        margins = signed * scores
        mistakes = (margins <= 0).float()  # a zero score counts as a mistake, as in Rosenblatt's rule
        return (-margins * mistakes).sum(dim=-1).mean()
    if name == "mse":
        return F.mse_loss(scores_to_probs(scores), F.one_hot(target, classes).float())
    raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


class ClassificationTask(pl.LightningModule):
    """Loss, metrics and optimisation around a net; knows nothing of the net's architecture."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        loss: str = "cross_entropy",
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        l1: float = 0.0,
        augment_shift: float = 0.0,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.loss_name = loss
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.l1 = float(l1)
        self.augment_shift = float(augment_shift)
        metric_args = {"num_classes": num_classes}
        # the net's own outputs need no per-step argument validation
        self.train_metrics = TrainEpochMetrics(
            loss=running_mean(),
            acc=MulticlassAccuracy(average="micro", validate_args=False, **metric_args))
        self.val_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.test_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.val_f1 = MulticlassF1Score(average="macro", **metric_args)
        self.test_f1 = MulticlassF1Score(average="macro", **metric_args)
        self.test_confusion = MulticlassConfusionMatrix(**metric_args)
        # sample-weighted means, synced across DDP processes like the counts above
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.confusion: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        scores = self.net(x)
        loss = classification_loss(self.loss_name, scores, y)
        return loss, scores_to_probs(scores.detach()), y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.augment_shift > 0 and x.dim() in (3, 4):
            x = random_shift(x, self.augment_shift)
        scores = self.net(x)
        loss = classification_loss(self.loss_name, scores, y)
        if self.l1 > 0:
            loss = loss + self.l1 * sum(p.abs().sum() for n, p in self.net.named_parameters() if "weight" in n)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, "
                f"step {self.global_step}: lower optimizer.lr (now {self.optimizer_cfg.get('lr')})"
            )
        self.train_metrics.update_mean("loss", loss, len(y))
        # accuracy needs only the arg-max: the softmax is skipped unless a lone logit needs it
        scores = scores.detach()
        self.train_metrics["acc"].update(scores if scores.shape[-1] > 1 else scores_to_probs(scores), y)
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.val_acc(probs, y)
        self.val_f1(probs, y)
        self.val_loss.update(loss, weight=len(y))
        self.log("val/loss", self.val_loss, prog_bar=True, batch_size=len(y))
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=len(y))
        self.log("val/f1", self.val_f1, batch_size=len(y))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.test_acc(probs, y)
        self.test_f1(probs, y)
        self.test_confusion.update(probs, y)
        self.test_loss.update(loss, weight=len(y))
        self.log("test/loss", self.test_loss, batch_size=len(y))
        self.log("test/acc", self.test_acc, batch_size=len(y))
        self.log("test/f1", self.test_f1, batch_size=len(y))

    def on_test_epoch_end(self) -> None:
        self.confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """confusion.csv (for ``dvc plots``) and confusion.png of the last test."""
        if self.confusion is None:
            return []
        csv_path, png_path = write_confusion(self.confusion, class_names, out_dir)
        return [png_path]

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


def write_confusion(confusion: torch.Tensor, class_names: list[str], out_dir: Path) -> tuple[Path, Path]:
    """``confusion.csv`` (one row per test sample, for dvc plots) and a PNG heat map."""
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


class Classification(Task):
    """Images, sequences and tables → one of ``num_classes`` labels."""

    name = "classification"
    data_kinds = ("image", "sequence", "tabular")
    data_tasks = ("classification",)
    monitor = ("val/acc", "max")

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        shift = float(cfg.data.get("augment_shift", 0.0))
        if shift > 0 and (meta.source.get("generate") or {}).get("shuffle_seq"):
            import warnings

            warnings.warn(f"data.augment_shift={shift} translates the sequence, but this variant of "
                          f"{meta.name} shuffles the positions (generate.shuffle_seq=true): the shift has "
                          f"no meaning there; set data.augment_shift=0", UserWarning, stacklevel=1)
        net = self.build_net(cfg, datamodule.input_shape, meta)
        module = ClassificationTask(
            net, num_classes=meta.num_classes, loss=cfg.model.get("loss", "cross_entropy"),
            optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler),
            l1=float(cfg.model.get("l1", 0.0)), augment_shift=float(cfg.data.get("augment_shift", 0.0)))
        return Built(module, [net])

    def exported_model(self, module) -> nn.Module:
        return ProbabilityModel(module.net)

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        runs = sorted(runs, key=lambda r: (r.run["data"], -r.get("test/acc")))
        lines = [
            "## Classification",
            "",
            "Test accuracy of every trained (dataset, model) pair on its held-out test split; models were",
            "selected on the validation split only.",
            "",
            "| dataset | model | parameters | test acc | test macro-F1 | best val acc | epochs | train s | MLflow run |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in runs:
            if r.run.get("reference"):  # scikit-learn on the same train+val / test split
                lines.append(f"| {r.run['data']} | *{r.run['model']}* | – | {100 * r.get('test/acc'):.1f} % | "
                             f"{100 * r.get('test/f1'):.1f} % | – | – | {r.get('train_seconds'):.1f} | reference |")
                continue
            lines.append(
                f"| {r.run['data']} | {r.run['model']} | {int(r.get('parameters', 0)):,} | "
                f"{100 * r.get('test/acc'):.1f} % | {100 * r.get('test/f1'):.1f} % | "
                f"{100 * r.get('val/acc_best'):.1f} % | {int(r.get('epochs', 0))} | "
                f"{r.get('train_seconds'):.1f} | `{r.run.get('run_id', '')[:8]}` |")
        if any(r.run.get("reference") for r in runs):
            lines += ["", "*Italic rows*: scikit-learn references fitted on the same prepared train+val "
                      "data and scored on the same test split (`report/baselines.py`)."]
        accuracy_chart([r for r in runs if not r.run.get("reference")], reports_dir / "comparison.png")
        return lines + ["", "![test accuracy by dataset and model](comparison.png)", ""]


def accuracy_chart(runs: list[RunResult], path: Path) -> None:
    """Grouped bars: test accuracy per dataset, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.run["data"] for r in runs})
    models = sorted({r.run["model"] for r in runs})
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(models) * len(datasets) + 2), 4))
    for i, model in enumerate(models):
        xs, ys = [], []
        for j, data in enumerate(datasets):
            match = [r for r in runs if r.run["data"] == data and r.run["model"] == model]
            if match:
                xs.append(j + i * width)
                ys.append(100 * match[0].get("test/acc"))
        bars = ax.bar(xs, ys, width, label=model)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(datasets))], datasets)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 120)  # headroom so the legend sits above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize=8, ncols=min(5, len(models)), loc="upper center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


TASK = Classification()
