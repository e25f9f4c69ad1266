"""Sequence to sequence (translation): teacher-forced cross-entropy, perplexity, greedy and beam
decoding, corpus BLEU (sacreBLEU's 13a tokenization, via torchmetrics) against the raw references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from archbench.data.tokens import PAD_ID
from archbench.errors import ConfigError
from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import lightning_optimizers

ATTENTION_MAPS = 3  # test sentences whose attention heat-map the attention model writes


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus-level BLEU in percent: sacreBLEU's defaults (13a tokenization, 4-grams, no smoothing
    beyond its exponential default), one reference per sentence."""
    from torchmetrics.functional.text import sacre_bleu_score

    if not hypotheses:
        return float("nan")
    return 100.0 * float(sacre_bleu_score(hypotheses, [[r] for r in references], tokenize="13a"))


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Right-padded ids cut after the batch's last real column."""
    used = (ids != PAD_ID).any(dim=0).nonzero()
    return ids[:, : int(used.max()) + 1 if len(used) else 1]


class Translator(nn.Module):
    """What archbench logs for a translation model: the net, both vocabularies and the tokenizer,
    so raw sentences can be translated (``translate``); ``forward`` maps source ids to greedy ids."""

    def __init__(self, net: nn.Module, source_vocab: list[str], target_vocab: list[str],
                 tokenizer: dict[str, Any], max_len: int, beam_size: int = 1, alpha: float = 1.0) -> None:
        super().__init__()
        self.net, self.source_vocab, self.target_vocab = net, list(source_vocab), list(target_vocab)
        self.tokenizer, self.max_len, self.beam_size, self.alpha = dict(tokenizer), max_len, beam_size, alpha

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        from archbench.nets.decoding import greedy_decode

        return greedy_decode(self.net, trim_padding(src), self.max_len)[0]

    def decode(self, src: torch.Tensor, beam_size: int | None = None) -> torch.Tensor:
        from archbench.nets.decoding import beam_search, greedy_decode

        beam = self.beam_size if beam_size is None else int(beam_size)
        src = trim_padding(src)
        return greedy_decode(self.net, src, self.max_len)[0] if beam == 1 else \
            beam_search(self.net, src, beam, self.max_len, self.alpha)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Source ids as in training (unknown words → ``<unk>``); an empty text is an error."""
        from archbench.data.parallel import encode_side
        from archbench.data.tokens import tokenize

        tokens = [tokenize(t, bool(self.tokenizer.get("lowercase", True))) for t in texts]
        empty = [i for i, t in enumerate(tokens) if not t]
        if empty:
            raise ConfigError(f"text {empty[0] + 1} of {len(texts)} is empty (nothing to translate)")
        return torch.from_numpy(encode_side(tokens, self.source_vocab, int(self.tokenizer["max_len"]), wrap=False)[0])

    def to_text(self, ids: torch.Tensor) -> list[str]:
        from archbench.data.parallel import detokenize, ids_to_tokens

        return [detokenize(ids_to_tokens(row, self.target_vocab)) for row in ids.tolist()]

    @torch.no_grad()
    def translate(self, texts: list[str], beam_size: int | None = None) -> list[str]:
        was_training = self.training
        self.eval()
        try:
            return self.to_text(self.decode(self.encode_texts(texts), beam_size))
        finally:
            self.train(was_training)


class Seq2SeqTask(TaskModule):
    """Teacher-forced training; ``val|test/loss`` (nats per target token, padding ignored) and
    ``/ppl``; ``val/bleu`` (greedy) each epoch, ``test/bleu_greedy``, ``test/bleu_beam`` and
    ``test/bleu`` (the configured decoder) on the tested weights."""

    def __init__(self, translator: Translator, references: dict[str, list[str]],
                 sources: list[str], optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, teacher_forcing: float = 1.0,
                 label_smoothing: float = 0.0, val_bleu: bool = True) -> None:
        super().__init__()
        if not 0 <= teacher_forcing <= 1:
            raise ConfigError(f"model.teacher_forcing must be in [0, 1], got {teacher_forcing}")
        self.save_hyperparameters(ignore=["translator", "references", "sources"])
        self.translator = translator  # holds the net (one copy of its weights in the checkpoint)
        self.references, self.sources = references, sources
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.teacher_forcing, self.label_smoothing, self.val_bleu = teacher_forcing, label_smoothing, val_bleu
        self.train_metrics = TrainEpochMetrics("loss")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.hypotheses: dict[str, list[torch.Tensor]] = {}
        self.attention: torch.Tensor | None = None
        self.test_texts: dict[str, list[str]] = {}

    @property
    def net(self) -> nn.Module:
        return self.translator.net

    def _loss(self, batch, teacher_forcing: float, smoothing: float) -> tuple[torch.Tensor, int]:
        src, tgt = trim_padding(batch[0]), trim_padding(batch[1])
        logits = self.net(src, tgt[:, :-1], teacher_forcing)
        gold = tgt[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1),
                               ignore_index=PAD_ID, label_smoothing=smoothing)
        return loss, int((gold != PAD_ID).sum())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, tokens = self._loss(batch, self.teacher_forcing, self.label_smoothing)
        self.train_metrics.update_mean("loss", check_finite(self, loss), tokens)
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def _evaluate(self, batch, split: str, metric: MeanMetric) -> None:
        loss, tokens = self._loss(batch, 1.0, 0.0)  # the true likelihood: gold inputs, no smoothing
        metric.update(loss, weight=tokens)
        self.log(f"{split}/loss", metric, prog_bar=split == "val", batch_size=tokens)
        if split == "test" or (self.val_bleu and not self.trainer.sanity_checking):
            self.hypotheses.setdefault(f"{split}/greedy", []).append(self.translator.decode(batch[0], 1).cpu())
            if split == "test" and self.translator.beam_size > 1:
                self.hypotheses.setdefault("test/beam", []).append(self.translator.decode(batch[0]).cpu())

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_loss)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_loss)

    def on_validation_epoch_start(self) -> None:
        self.hypotheses = {}

    on_test_epoch_start = on_validation_epoch_start

    def _bleu(self, split: str, decoder: str) -> float | None:
        """BLEU of one decoder's hypotheses, when this process decoded the whole split in order."""
        chunks = self.hypotheses.get(f"{split}/{decoder}")
        references = self.references[split]
        if not chunks or sum(len(c) for c in chunks) != len(references) or self.trainer.world_size > 1:
            return None
        texts = [text for chunk in chunks for text in self.translator.to_text(chunk)]
        if split == "test":
            self.test_texts[decoder] = texts
        return corpus_bleu(texts, references)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val/ppl", torch.exp(self.val_loss.compute().clamp(max=50)))
            bleu = self._bleu("val", "greedy")
            if bleu is not None:
                self.log("val/bleu", bleu, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", torch.exp(self.test_loss.compute().clamp(max=50)))
        greedy = self._bleu("test", "greedy")
        beam = self._bleu("test", "beam") if self.translator.beam_size > 1 else None
        if greedy is not None:
            self.log("test/bleu_greedy", greedy)
            self.log("test/bleu", beam if beam is not None else greedy)
        if beam is not None:
            self.log("test/bleu_beam", beam)
        self._record_attention()

    def _record_attention(self) -> None:
        from archbench.nets.decoding import greedy_decode

        src = self.translator.encode_texts(self.sources[:ATTENTION_MAPS]).to(self.device)
        ids, weights = greedy_decode(self.net, trim_padding(src), self.translator.max_len, keep_attention=True)
        self.attention = None if weights is None else weights.cpu()
        self._attention_ids = (trim_padding(src).cpu(), ids.cpu())

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """translations.tsv (source, reference, greedy and beam hypotheses of every test sentence)
        and, for a net with attention, attention_<i>.png of the first test sentences."""
        if not self.test_texts:
            return []
        import csv

        path = Path(out_dir) / "translations.tsv"
        decoders = [d for d in ("greedy", "beam") if d in self.test_texts]
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["source", "reference", *decoders])
            for i, (source, reference) in enumerate(zip(self.sources, self.references["test"], strict=True)):
                writer.writerow([source, reference, *(self.test_texts[d][i] for d in decoders)])
        return [path, *self._attention_maps(Path(out_dir))]

    def _attention_maps(self, out_dir: Path) -> list[Path]:
        if self.attention is None:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from archbench.data.parallel import ids_to_tokens

        src, ids = self._attention_ids
        paths = []
        for i in range(len(src)):
            source = [self.translator.source_vocab[t] for t in src[i].tolist() if t != PAD_ID]
            target = ids_to_tokens(ids[i].tolist(), self.translator.target_vocab) + ["<eos>"]
            weights = self.attention[i, : len(target), : len(source)].numpy()
            fig, ax = plt.subplots(figsize=(1 + 0.35 * len(source), 1 + 0.3 * len(target)))
            ax.imshow(weights, cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(source)), source, rotation=90)
            ax.set_yticks(range(len(target)), target)
            ax.set_xlabel("source")
            ax.set_ylabel("translation")
            fig.tight_layout()
            paths.append(out_dir / f"attention_{i}.png")
            fig.savefig(paths[-1], dpi=100)
            plt.close(fig)
        return paths

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


class Seq2Seq(Task):
    """Sentence pairs → a translation model (the model's ``seq2seq_net``)."""

    name = "seq2seq"
    data_kinds = ("parallel",)
    net_key = "seq2seq_net"
    data_tasks = ("seq2seq",)
    summary = "translation: BLEU of greedy and beam-search decoding"
    model_format = "pickle"  # source ids → greedy ids through a Python decoding loop

    def net_sizes(self, meta) -> dict[str, Any]:
        return {"src_vocab_size": int(meta.extra["translation"]["source_vocab_size"])}

    def outputs(self, meta) -> int:
        return int(meta.extra["translation"]["target_vocab_size"])

    def translator(self, cfg, meta, net: nn.Module) -> Translator:
        info, decode = meta.extra["translation"], dict(cfg.get("decode") or {})
        max_len = int(decode.get("max_len") or int(info["tokenizer"]["max_len"]) + 1)
        beam = int(decode.get("beam_size", 1))
        if beam < 1:
            raise ConfigError(f"decode.beam_size must be ≥ 1 (1: greedy), got {beam}")
        return Translator(net, info["source_vocab"], info["target_vocab"], info["tokenizer"], max_len,
                          beam, float(decode.get("length_penalty", 1.0)))

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        net = self.build_net(cfg, datamodule.input_shape, meta)
        pairs = json.loads((datamodule.data_dir / "pairs.json").read_text(encoding="utf-8"))
        lowercase = bool(meta.extra["translation"]["tokenizer"].get("lowercase", True))
        module = Seq2SeqTask(
            self.translator(cfg, meta, net),
            references={split: [r.lower() if lowercase else r for r in pairs[split]["reference"]]
                        for split in ("val", "test")},
            sources=pairs["test"]["source"], optimizer=to_dict(cfg.optimizer),
            scheduler=to_dict(cfg.scheduler), teacher_forcing=float(cfg.model.get("teacher_forcing", 1.0)),
            label_smoothing=float(cfg.model.get("label_smoothing", 0.0)),
            val_bleu=bool((cfg.get("decode") or {}).get("val_bleu", True)))
        return Built(module, [net])

    def cost_inputs(self, module, datamodule):
        return None  # the cost axes compare classifiers and regressors

    def exported_model(self, module) -> nn.Module:
        return module.translator

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.translation import section

        return section(runs, reports_dir)


TASK = Seq2Seq()
