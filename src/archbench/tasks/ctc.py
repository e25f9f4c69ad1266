"""CTC transcription (Graves et al. 2006): spectrogram frames → the digits spoken, trained with
``torch.nn.functional.ctc_loss``; greedy and prefix-beam decoding; digit error rate (edit distance
over reference length, torchmetrics' WordErrorRate on space-separated digits) and string error
rate (strings not transcribed exactly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.text import WordErrorRate

from archbench.data.augment import Augmentation
from archbench.errors import ConfigError
from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import lightning_optimizers


def as_text(symbols: list[int], names: list[str]) -> str:
    return " ".join(names[s] for s in symbols)


def digit_error_rate(hypotheses: list[str], references: list[str]) -> float:
    """Edit distance (substitutions, insertions, deletions of digits) over the references' length,
    pooled over every string; inputs are space-separated digits."""
    from torchmetrics.functional.text import word_error_rate

    return float(word_error_rate(hypotheses, references))


class Transcriber(nn.Module):
    """What archbench logs for a CTC model: the net with its feature settings and training
    statistics, so a raw waveform can be transcribed (``transcribe``); ``forward`` maps normalised
    features ``(N, features, frames)`` to per-frame log-probabilities."""

    def __init__(self, net: nn.Module, audio: dict[str, Any], class_names: list[str], beam_size: int = 8) -> None:
        super().__init__()
        self.net, self.class_names, self.beam_size = net, list(class_names), int(beam_size)
        self.audio = {k: audio[k] for k in ("features", "mean", "std", "silence")}
        self.blank = len(self.class_names)

    @property
    def sample_rate(self) -> int:
        return int(self.audio["features"]["sample_rate"])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths).log_softmax(dim=-1)

    def decode(self, x: torch.Tensor, lengths: torch.Tensor, beam_size: int | None = None) -> list[list[int]]:
        from archbench.nets.decoding import ctc_greedy, ctc_prefix_beam

        log_probs = self(x, lengths)
        frames = self.net.output_lengths(lengths).clamp(max=log_probs.shape[1])
        beam = self.beam_size if beam_size is None else int(beam_size)
        if beam <= 1:
            return ctc_greedy(log_probs, frames, self.blank)
        return [ctc_prefix_beam(lp, int(n), self.blank, beam) for lp, n in zip(log_probs, frames, strict=True)]

    @torch.no_grad()
    def transcribe(self, waves: list, beam_size: int | None = None) -> list[str]:
        """The digits heard in each waveform (mono float samples at ``sample_rate``)."""
        from archbench.data.audio import FrontEnd
        from archbench.data.speech import pad_frames

        front = FrontEnd(self.audio)
        x, lengths = pad_frames([front(w) for w in waves], front.silence)
        was_training = self.training
        self.eval()
        try:
            return [as_text(s, self.class_names) for s in self.decode(x, lengths, beam_size)]
        finally:
            self.train(was_training)


class CTCTask(TaskModule):
    """CTC loss per string (``zero_infinity``: a string too long for its frames costs nothing
    rather than NaN); ``val/wer`` greedy each epoch; on test ``test/wer_greedy``, ``test/wer_beam``,
    ``test/wer`` (the configured decoder), ``test/ser`` and ``test/loss``."""

    def __init__(self, transcriber: Transcriber, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, augment: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["transcriber"])
        self.transcriber = transcriber
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.augment = Augmentation(**(augment or {}))
        self.train_metrics = TrainEpochMetrics("loss")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_wer, self.test_wer_greedy, self.test_wer_beam = WordErrorRate(), WordErrorRate(), WordErrorRate()
        self.val_ser, self.test_ser = MeanMetric(), MeanMetric()
        self.transcripts: list[tuple[str, str, str]] = []

    @property
    def net(self) -> nn.Module:
        return self.transcriber.net

    def _loss(self, x, lengths, y, y_lengths) -> torch.Tensor:
        log_probs = self.transcriber(x, lengths)
        frames = self.net.output_lengths(lengths).clamp(max=log_probs.shape[1])
        return F.ctc_loss(log_probs.transpose(0, 1), y, frames, y_lengths, blank=self.transcriber.blank,
                          zero_infinity=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, lengths, y, y_lengths = batch
        loss = self._loss(self.augment(x), lengths, y, y_lengths)
        self.train_metrics.update_mean("loss", check_finite(self, loss), len(y))
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def _texts(self, y, y_lengths) -> list[str]:
        names = self.transcriber.class_names
        return [as_text(row[: int(n)], names) for row, n in zip(y.tolist(), y_lengths.tolist(), strict=True)]

    def validation_step(self, batch, batch_idx: int) -> None:
        x, lengths, y, y_lengths = batch
        self.val_loss.update(self._loss(x, lengths, y, y_lengths), weight=len(y))
        references = self._texts(y, y_lengths)
        greedy = [as_text(s, self.transcriber.class_names) for s in self.transcriber.decode(x, lengths, 1)]
        self.val_wer.update(greedy, references)
        self.val_ser.update(torch.tensor([h != r for h, r in zip(greedy, references, strict=True)], dtype=torch.float))
        self.log("val/loss", self.val_loss, prog_bar=True, batch_size=len(y))
        self.log("val/wer", self.val_wer, prog_bar=True, batch_size=len(y))
        self.log("val/ser", self.val_ser, batch_size=len(y))

    def on_test_epoch_start(self) -> None:
        self.transcripts = []

    def test_step(self, batch, batch_idx: int) -> None:
        x, lengths, y, y_lengths = batch
        self.test_loss.update(self._loss(x, lengths, y, y_lengths), weight=len(y))
        references = self._texts(y, y_lengths)
        names = self.transcriber.class_names
        greedy = [as_text(s, names) for s in self.transcriber.decode(x, lengths, 1)]
        beam = ([as_text(s, names) for s in self.transcriber.decode(x, lengths)]
                if self.transcriber.beam_size > 1 else greedy)
        self.test_wer_greedy.update(greedy, references)
        self.test_wer_beam.update(beam, references)
        self.test_ser.update(torch.tensor([h != r for h, r in zip(beam, references, strict=True)], dtype=torch.float))
        self.transcripts += list(zip(references, greedy, beam, strict=True))
        for name, metric in (("loss", self.test_loss), ("wer_greedy", self.test_wer_greedy),
                             ("wer_beam", self.test_wer_beam), ("wer", self.test_wer_beam), ("ser", self.test_ser)):
            self.log(f"test/{name}", metric, batch_size=len(y))

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """transcripts.tsv: every test string's reference, greedy and beam transcription (one process)."""
        if not self.transcripts or self.trainer.world_size > 1:
            return []
        path = Path(out_dir) / "transcripts.tsv"
        lines = ["reference\tgreedy\tbeam", *("\t".join(row) for row in self.transcripts)]
        path.write_text("\n".join(lines) + "\n")
        return [path]

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


class CTC(Task):
    """Spoken strings → the symbols said, per-frame outputs aligned by CTC (the model's ``net``)."""

    name = "ctc"
    data_kinds = ("audio",)
    data_tasks = ("ctc",)
    monitor = ("val/wer", "min")
    summary = "transcription: digit and string error rates of greedy and prefix-beam CTC decoding"
    model_format = "pickle"  # waveform → digits through Python decoding

    def datamodule(self, cfg, data_dir: Path, meta):
        from archbench.data.speech import SpokenStringsDataModule

        data = cfg.data
        return SpokenStringsDataModule(data_dir, batch_size=int(data.batch_size),
                                       eval_batch_size=int(data.eval_batch_size),
                                       steps_per_epoch=int(data.get("steps_per_epoch", 100)),
                                       noise_snr=data.get("augment_noise_snr"),
                                       verify_checksum=bool(data.verify_checksum), seed=int(cfg.seed))

    def outputs(self, meta) -> int:
        return int(meta.num_classes) + 1  # the symbols and the blank (last)

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        beam = int((cfg.model.get("decode") or {}).get("beam_size", 8))
        if beam < 1:
            raise ConfigError(f"model.decode.beam_size must be ≥ 1 (1: greedy), got {beam}")
        net = self.build_net(cfg, datamodule.input_shape, meta)
        masks = Augmentation(time_mask=int(cfg.data.get("augment_time_mask", 0) or 0),
                             freq_mask=int(cfg.data.get("augment_freq_mask", 0) or 0),
                             masks=int(cfg.data.get("augment_masks", 2)))
        module = CTCTask(Transcriber(net, meta.extra["audio"], meta.class_names, beam),
                         optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler), augment=masks.as_dict())
        return Built(module, [net])

    def export(self, module, datamodule, serialization_format: str | None) -> str:
        from archbench.tracking.mlflow_run import log_torch_model

        example = datamodule.example_batch(2)["x"].cpu()
        return log_torch_model(module.transcriber.cpu(), example, serialization_format or self.model_format)

    def exported_model(self, module) -> nn.Module:
        return module.transcriber

    def cost_inputs(self, module, datamodule):
        return None  # the cost axes compare classifiers and regressors

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.speech import ctc_section

        return ctc_section(runs)


TASK = CTC()
