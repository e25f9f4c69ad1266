"""Classification of images, sequences and tables by any net that maps inputs to class scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from archbench.data.augment import Augmentation
from archbench.errors import ConfigError
from archbench.nets.common import dropout_rate
from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.distill import Distillation, distillation_loss, load_teacher
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import lightning_optimizers

LOSSES = ("cross_entropy", "perceptron", "mse")


def scores_to_probs(scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from scores: softmax, or sigmoid for a single two-class output."""
    if scores.shape[-1] == 1:
        positive = torch.sigmoid(scores)
        return torch.cat([1 - positive, positive], dim=-1)
    return scores.softmax(dim=-1)


def predicted_classes(scores: torch.Tensor) -> torch.Tensor:
    """The arg-max class; the softmax is skipped unless a lone logit needs it (sigmoid)."""
    return (scores if scores.shape[-1] > 1 else scores_to_probs(scores)).argmax(-1)


def drop_words(ids: torch.Tensor, rate: float) -> torch.Tensor:
    """Word dropout (Iyyer et al. 2015): each real word becomes ``<unk>`` with probability ``rate``,
    so no single word decides; padding stays padding."""
    from archbench.data.tokens import PAD_ID, UNK_ID

    dropped = (torch.rand(ids.shape, device=ids.device) < rate) & (ids != PAD_ID)
    return ids.masked_fill(dropped, UNK_ID)


class TextProbabilityModel(nn.Module):
    """What archbench logs for a text classifier: word ids → class probabilities, plus the
    tokenizer and vocabulary of its training data so raw text can be classified (``predict_texts``)."""

    def __init__(self, net: nn.Module, vocab: list[str], tokenizer: dict[str, Any]) -> None:
        super().__init__()
        self.net, self.vocab, self.tokenizer = net, list(vocab), dict(tokenizer)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return scores_to_probs(self.net(ids))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Right-padded ids as in training (unknown words → ``<unk>``); an empty text is an error."""
        from archbench.data.tokens import encode, tokenize

        tokens = [tokenize(t, bool(self.tokenizer.get("lowercase", True))) for t in texts]
        empty = [i for i, t in enumerate(tokens) if not t]
        if empty:
            raise ConfigError(f"text {empty[0] + 1} of {len(texts)} is empty (no words to classify)")
        ids, _ = encode(tokens, self.vocab, int(self.tokenizer["max_len"]),
                        str(self.tokenizer.get("truncation", "end")))
        return torch.from_numpy(ids)

    @torch.no_grad()
    def predict_texts(self, texts: list[str]) -> torch.Tensor:
        was_training = self.training
        probs = self.eval()(self.encode_texts(texts))
        self.train(was_training)
        return probs


class AudioProbabilityModel(nn.Module):
    """What archbench logs for a spectrogram classifier: normalised features → class probabilities,
    plus the feature settings and training statistics, so WAV recordings can be classified
    (``predict_waves``) exactly as the training recordings were prepared."""

    def __init__(self, net: nn.Module, audio: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.audio = {k: audio[k] for k in ("features", "mean", "std", "frames")}

    @property
    def sample_rate(self) -> int:
        return int(self.audio["features"]["sample_rate"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scores_to_probs(self.net(x))

    @torch.no_grad()
    def predict_waves(self, waves: list) -> torch.Tensor:
        """Probabilities for mono float waveforms at ``sample_rate`` (padded or cropped to the
        training frames)."""
        from archbench.data.audio import FrontEnd, fit_to_frames

        front, frames = FrontEnd(self.audio), int(self.audio["frames"])
        x = torch.stack([front(fit_to_frames(w, front.features, frames), min(front.features.frames_for(len(w)), frames))
                         for w in waves])
        was_training = self.training
        probs = self.eval()(x)
        self.train(was_training)
        return probs


class ProbabilityModel(nn.Module):
    """What archbench logs as a model: inputs → class probabilities (shape ``(N, classes)``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scores_to_probs(self.net(x))


def classification_loss(name: str, scores: torch.Tensor, target: torch.Tensor,
                        smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy (binary for one output), the perceptron criterion, or MSE on probabilities.
    ``smoothing`` (cross-entropy only) mixes the one-hot target with the uniform one (Szegedy et al.
    2016); the training loss alone uses it, validation and test losses stay plain."""
    classes = max(2, scores.shape[-1])
    if name == "cross_entropy":
        if scores.shape[-1] == 1:
            soft = target.float() * (1 - smoothing) + smoothing / 2 if smoothing else target.float()
            return F.binary_cross_entropy_with_logits(scores.squeeze(-1), soft)
        return F.cross_entropy(scores, target, label_smoothing=smoothing)
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


class ClassificationTask(TaskModule):
    """Loss, metrics and optimisation around a net; knows nothing of the net's architecture."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        loss: str = "cross_entropy",
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        l1: float = 0.0,
        augment: dict[str, Any] | None = None,
        word_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        teacher: nn.Module | None = None,
        distill: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        if not 0.0 <= label_smoothing < 1.0 or (label_smoothing and loss != "cross_entropy"):
            raise ConfigError(f"model.label_smoothing={label_smoothing}: needs 0 ≤ value < 1 and "
                              f"loss=cross_entropy (loss is {loss})")
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["net", "teacher"])
        self.net = net
        # frozen and outside the module's parameters and state (not trained, not checkpointed)
        object.__setattr__(self, "teacher", teacher)
        self.distill = Distillation(**(distill or {}))
        self.loss_name = loss
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.l1 = float(l1)
        self.label_smoothing = float(label_smoothing)
        self.augment = Augmentation(**(augment or {}))
        self.word_dropout = dropout_rate("data.word_dropout", word_dropout)
        metric_args = {"num_classes": num_classes}
        # train/acc: the running mean of per-example hits (micro accuracy, as val/test)
        self.train_metrics = TrainEpochMetrics("loss", "acc")
        self.val_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.test_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.val_f1 = MulticlassF1Score(average="macro", **metric_args)
        self.test_f1 = MulticlassF1Score(average="macro", **metric_args)
        self.test_confusion = MulticlassConfusionMatrix(**metric_args)
        # sample-weighted means, synced across DDP processes like the counts above
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_count = SumMetric()
        self.confusion: torch.Tensor | None = None
        # per-example test probabilities: the report's paired tests and calibration read them
        self._test_probs: list[torch.Tensor] = []
        self._test_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        scores = self.net(x)
        loss = classification_loss(self.loss_name, scores, y)
        return loss, scores_to_probs(scores.detach()), y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = self.augment(x)
        if self.word_dropout > 0 and not x.is_floating_point():
            x = drop_words(x, self.word_dropout)
        scores = self.net(x)
        loss = classification_loss(self.loss_name, scores, y, self.label_smoothing)
        if self.teacher is not None:
            with torch.no_grad():
                taught = self.teacher(x)
            mix = self.distill.weight
            loss = (1 - mix) * loss + mix * distillation_loss(scores, taught, self.distill.temperature,
                                                              self.distill.hard)
        if self.l1 > 0:
            loss = loss + self.l1 * sum(p.abs().sum() for n, p in self.net.named_parameters() if "weight" in n)
        self.train_metrics.update_mean("loss", check_finite(self, loss), len(y))
        self.train_metrics.update_hits_from_scores("acc", scores, y, predicted_classes)
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.val_acc(probs, y)
        self.val_f1(probs, y)
        self.val_loss.update(loss, weight=len(y))
        self.val_count.update(len(y))
        self.log("val/loss", self.val_loss, prog_bar=True, batch_size=len(y))
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=len(y))
        self.log("val/f1", self.val_f1, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        """``val/acc_then_loss``: validation accuracy, ties broken by validation loss. The loss term
        is below half of one example's worth of accuracy, so it only orders epochs of equal accuracy:
        on a tiny or saturated validation split (every epoch 100 %) selection and early stopping
        follow the loss instead of freezing on the first perfect epoch."""
        count = float(self.val_count.compute())
        if count > 0:
            tiebreak = 0.5 / count / (1.0 + self.val_loss.compute().clamp(min=0))
            # the same on every rank (torchmetrics' compute() syncs them): sync_dist averages
            # equal values, and Lightning no longer warns that it might not be
            self.log("val/acc_then_loss", self.val_acc.compute() + tiebreak, sync_dist=True)
        self.val_count.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.test_acc(probs, y)
        self.test_f1(probs, y)
        self.test_confusion.update(probs, y)
        self._test_probs.append(probs.float().cpu())
        self._test_targets.append(y.cpu())
        self.test_loss.update(loss, weight=len(y))
        self.log("test/loss", self.test_loss, batch_size=len(y))
        self.log("test/acc", self.test_acc, batch_size=len(y))
        self.log("test/f1", self.test_f1, batch_size=len(y))

    def on_test_epoch_start(self) -> None:
        self._test_probs, self._test_targets = [], []

    def on_test_epoch_end(self) -> None:
        self.confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """confusion.csv (for ``dvc plots``), confusion.png and test_predictions.npz of the last test
        (the predictions only from a single process, which saw the whole test split in order)."""
        if self.confusion is None:
            return []
        csv_path, png_path = write_confusion(self.confusion, class_names, out_dir)
        if self.trainer.world_size > 1 or not self._test_probs:
            return [png_path]
        import numpy as np

        predictions = out_dir / "test_predictions.npz"
        np.savez_compressed(predictions, probs=torch.cat(self._test_probs).numpy(),
                            targets=torch.cat(self._test_targets).numpy())
        return [png_path, predictions]

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
    data_kinds = ("image", "sequence", "tabular", "tokens", "audio")
    data_tasks = ("classification",)
    monitor = ("val/acc_then_loss", "max")  # accuracy, ties broken by loss (see on_validation_epoch_end)
    distills = True

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        shift = float(cfg.data.get("augment_shift", 0.0))
        if shift > 0 and (meta.source.get("generate") or {}).get("shuffle_seq"):
            import warnings

            warnings.warn(f"data.augment_shift={shift} translates the sequence, but this variant of "
                          f"{meta.name} shuffles the positions (generate.shuffle_seq=true): the shift has "
                          f"no meaning there; set data.augment_shift=0", UserWarning, stacklevel=1)
        net = self._net(cfg, datamodule.input_shape, meta)
        distill = Distillation.from_config(cfg)
        teacher = None
        if distill.enabled:
            from archbench.tracking.runs import run_folder

            folder = run_folder(str(distill.teacher), str(cfg.logger.tracking_uri), "distill.teacher")
            teacher = load_teacher(folder, meta.checksum,
                                   lambda teacher_cfg: self._net(teacher_cfg, datamodule.input_shape, meta))
        module = ClassificationTask(
            net, num_classes=meta.num_classes, loss=cfg.model.get("loss", "cross_entropy"),
            optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler),
            l1=float(cfg.model.get("l1", 0.0)),
            label_smoothing=float(cfg.model.get("label_smoothing", 0.0)),
            augment=Augmentation.from_data_config(cfg.data, meta.kind, meta.extra.get("audio")).as_dict(),
            word_dropout=float(cfg.data.get("word_dropout", 0.0)),
            teacher=teacher, distill=vars(distill) if distill.enabled else None)
        return Built(module, [net])

    def _net(self, cfg, input_shape: list[int], meta) -> nn.Module:
        """The model's net; on spectrograms behind the audio front-end it reads (``model.audio_view``)."""
        if meta.kind != "audio":
            return self.build_net(cfg, input_shape, meta)
        from archbench.nets.audio import FeatureView, ViewedNet

        view = FeatureView(str(cfg.model.get("audio_view", "frames")))
        return ViewedNet(view, self.build_net(cfg, view.shape(input_shape), meta))

    def net_key_for(self, meta) -> str:
        return "text_net" if meta.kind == "tokens" else self.net_key

    def net_sizes(self, meta) -> dict[str, Any]:
        return {"vocab_size": int(meta.extra["text"]["vocab_size"])} if meta.kind == "tokens" else {}

    def exported_model(self, module) -> nn.Module:
        return ProbabilityModel(module.net)

    def export(self, module, datamodule, serialization_format: str | None) -> str:
        """Text classifiers are logged with their vocabulary (pickled: they tokenize raw text), audio
        classifiers with their feature settings (pickled: they read WAV recordings)."""
        from archbench.tracking.mlflow_run import log_torch_model

        meta = datamodule.load()
        if meta.kind == "audio":  # pickled too: it turns WAV recordings into features
            model = AudioProbabilityModel(module.net, meta.extra["audio"]).cpu()
            return log_torch_model(model, datamodule.example_batch(2)["x"].cpu(), serialization_format or "pickle")
        if meta.kind != "tokens":
            return super().export(module, datamodule, serialization_format)
        import json

        vocab = json.loads((datamodule.data_dir / "vocab.json").read_text(encoding="utf-8"))
        model = TextProbabilityModel(module.net, vocab, meta.extra["text"]["tokenizer"]).cpu()
        example = datamodule.example_batch(2)["x"].cpu()
        return log_torch_model(model, example, serialization_format or "pickle")

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.classification import section

        return section(runs, reports_dir)


TASK = Classification()
