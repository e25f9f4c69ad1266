"""Character-level language modelling: next-character cross-entropy, bits per character, and
sampling with temperature and top-k."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError
from archbench.tasks.base import Built, RunResult, Task
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import lightning_optimizers


class CharLanguageModel(nn.Module):
    """What archbench logs for a language model: the net plus its vocabulary, able to generate."""

    def __init__(self, net: nn.Module, vocab: list[str], block_size: int) -> None:
        super().__init__()
        self.net, self.vocab, self.block_size = net, list(vocab), int(block_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(ids)

    def encode(self, text: str) -> torch.Tensor:
        lookup = {ch: i for i, ch in enumerate(self.vocab)}
        unknown = sorted({ch for ch in text if ch not in lookup})
        if unknown:
            raise ConfigError(f"prompt has characters outside the vocabulary: {unknown!r} "
                              f"(the corpus has {len(self.vocab)} characters)")
        return torch.tensor([lookup[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.vocab[i] for i in ids.tolist())

    @torch.no_grad()
    def generate(self, prompt: str, length: int = 200, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None) -> str:
        """``prompt`` followed by ``length`` sampled characters (reproducible with ``seed``)."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        was_training = self.training
        self.eval()
        ids = self.encode(prompt or self.vocab[0]).unsqueeze(0)
        device = next(self.parameters()).device
        ids = ids.to(device)
        for _ in range(length):
            logits = self.net(ids[:, -self.block_size :])[:, -1, :] / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = logits.softmax(dim=-1).cpu()
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator).to(device)], dim=1)
        self.train(was_training)
        text = self.decode(ids[0].cpu())
        return text if prompt else text[1:]


class LanguageModelTask(TaskModule):
    """Next-character prediction; logs ``*/loss`` in nats per character and ``val|test/bpc``."""

    def __init__(self, net: nn.Module, vocab: list[str], block_size: int,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
                 sample_every_n_epochs: int = 1, sample_length: int = 200, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.model = CharLanguageModel(net, vocab, block_size)
        self.optimizer_cfg = dict(optimizer or {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.sample_every, self.sample_length, self.seed = sample_every_n_epochs, sample_length, seed
        self.samples: list[str] = []
        self.train_metrics = TrainEpochMetrics("loss")

    @property
    def net(self) -> nn.Module:
        return self.model.net

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.train_metrics.update_mean("loss", check_finite(self, loss), batch[0].numel())
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        loss = self._loss(batch)
        count = batch[0].numel()  # weight by characters so the epoch value is per character
        self.log(f"{split}/loss", loss, prog_bar=split == "val", sync_dist=True, batch_size=count)
        self.log(f"{split}/bpc", loss / math.log(2), sync_dist=True, batch_size=count)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.global_rank != 0 or not self.sample_every:
            return
        if self.current_epoch % self.sample_every:
            return
        sample = self.model.generate("\n", self.sample_length, temperature=0.8, top_k=None,
                                     seed=self.seed + self.current_epoch)
        self.samples.append(sample)
        logger = self.logger
        if logger is not None and hasattr(logger, "run_id"):
            logger.experiment.log_text(logger.run_id, sample,
                                       f"samples/epoch_{self.current_epoch:03d}.txt")

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """sample.txt: a sample from the tested (best) weights."""
        path = Path(out_dir) / "sample.txt"
        path.write_text(self.model.generate("\n", self.sample_length, temperature=0.8, top_k=None,
                                            seed=self.seed))
        return [path]

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.model.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


class LanguageModel(Task):
    """Character-level language modelling on a text corpus (the model's ``lm_net``)."""

    name = "language_model"
    data_kinds = ("text",)
    net_key = "lm_net"
    model_format = "pickle"  # Python control flow in ``generate``

    def datamodule(self, cfg, data_dir, meta):
        from archbench.data.datamodule import TextDataModule

        data = cfg.data
        return TextDataModule(data_dir, block_size=int(data.block_size), batch_size=int(data.batch_size),
                              eval_batch_size=int(data.eval_batch_size),
                              steps_per_epoch=int(data.steps_per_epoch),
                              verify_checksum=bool(data.verify_checksum), seed=int(cfg.seed))

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        net = self.build_net(cfg, datamodule.input_shape, meta)
        module = LanguageModelTask(
            net, vocab=meta.class_names, block_size=int(cfg.data.block_size),
            optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler),
            sample_every_n_epochs=int(cfg.data.get("sample_every_n_epochs", 1)),
            sample_length=int(cfg.data.get("sample_length", 200)), seed=int(cfg.seed))
        return Built(module, [net])

    def cost_inputs(self, module, datamodule):
        return None  # the cost axes compare classifiers and regressors

    def exported_model(self, module) -> nn.Module:
        return module.model  # ids → logits, plus the vocabulary and ``generate``

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.replicates import plus_minus, seed_interval, seeds_cell

        runs = sorted(runs, key=lambda r: (r.run["data"], r.get("test/bpc")))
        lines = ["## Character language models", "",
                 "Bits per character on the held-out contiguous test text (lower is better): mean ± std",
                 "over seeds, and a 95 % bootstrap interval over the seeds alone (one test text: its own",
                 "sampling noise is not in it; three seeds resolve little).", "",
                 "| corpus | model | seeds | parameters | best val bpc | test bpc | 95 % CI | test nats/char | train s |",
                 "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for r in runs:
            lines.append(f"| {r.run['data']} | {r.run['model']} | {seeds_cell(r)} | {int(r.get('parameters', 0)):,} | "
                         f"{plus_minus(r, 'val/loss_best', 1 / math.log(2), 3)} | {plus_minus(r, 'test/bpc', digits=3)} | "
                         f"{seed_interval(r, 'test/bpc', digits=3)} | {r.get('test/loss'):.3f} | "
                         f"{r.get('train_seconds'):.1f} |")
        for r in runs:
            sample = r.folder / "sample.txt"
            text = sample.read_text()[:300] if sample.is_file() else ""
            lines += ["", f"**{r.run['model']} on {r.run['data']}**, last sample:", "", "```",
                      text.strip("\n"), "```"]
        return lines + [""]


TASK = LanguageModel()
