"""Top-k recommendation from implicit feedback (He et al. 2017's protocol): binary cross-entropy on
positives and sampled negatives; each user's held-out item ranked among 99 sampled negatives,
``hr_at_10`` (is it in the top 10) and ``ndcg_at_10`` (1 / log2(rank + 2) when it is).

Ranks break ties at random (seeded), so a constant scorer scores HR@10 = 10/100 in expectation;
written here because torchmetrics' retrieval metrics order tied scores by position, which would
credit the held-out item (always candidate 0) to a constant scorer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from archbench.tasks.base import Built, RunResult
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import KeepsTestRows, TaskModule
from archbench.tasks.optim import lightning_optimizers
from archbench.tasks.rating import Rating


def held_out_ranks(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """0-based rank of candidate 0 among each row's candidates, ties broken uniformly at random."""
    positive = scores[:, :1]
    above = (scores[:, 1:] > positive).sum(1)
    tied = (scores[:, 1:] == positive).sum(1)
    draw = torch.rand(len(scores), generator=generator, device="cpu").to(scores.device)
    return above + (draw * (tied + 1)).floor().long().clamp(max=tied)


def hit_rate_and_ndcg(ranks: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row hit (rank < k) and NDCG@k (one relevant item: 1 / log2(rank + 2) within the top k)."""
    hit = (ranks < k).float()
    return hit, hit / torch.log2(ranks.float() + 2)


class RankingTask(KeepsTestRows, TaskModule):
    """BCE on positive and negative pairs; HR@k and NDCG@k of each user's held-out item, kept per
    test user (``test_predictions.npz``)."""

    test_row_names = ("hits", "ndcg")

    def __init__(self, net: nn.Module, cutoff: int = 10, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net, self.cutoff, self.seed = net, int(cutoff), int(seed)
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.train_metrics = TrainEpochMetrics("loss")
        names = ("hr", "ndcg")
        self.metrics = nn.ModuleDict({split: nn.ModuleDict({n: MeanMetric() for n in names})
                                      for split in ("val", "test")})

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self.net(x), y)
        self.train_metrics.update_mean("loss", check_finite(self, loss), len(y))
        self.train_metrics.log_if_epoch_ends(self)
        return loss

    def candidate_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, candidates)`` of rows ``[user, item_0, item_1, …]``."""
        users = rows[:, :1].expand(-1, rows.shape[1] - 1)
        pairs = torch.stack([users, rows[:, 1:]], dim=-1).reshape(-1, 2)
        return self.net(pairs).view(len(rows), -1)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                  split: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows = batch[0]
        generator = torch.Generator().manual_seed(self.seed * 7919 + batch_idx)
        hit, ndcg = hit_rate_and_ndcg(held_out_ranks(self.candidate_scores(rows), generator), self.cutoff)
        metrics = self.metrics[split]
        metrics["hr"].update(hit)
        metrics["ndcg"].update(ndcg)
        for name, metric in metrics.items():
            self.log(f"{split}/{name}_at_{self.cutoff}", metric, prog_bar=True, batch_size=len(rows))
        return hit, ndcg

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.keep_test_rows(*self._evaluate(batch, batch_idx, "test"))

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)


class Ranking(Rating):
    """Implicit feedback: which items will a user interact with (leave-one-out, sampled negatives)."""

    name = "ranking"
    data_tasks = ("ranking",)
    monitor = ("val/ndcg_at_10", "max")

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict

        net = self.build_net(cfg, datamodule.input_shape, meta)
        module = RankingTask(net, optimizer=to_dict(cfg.optimizer), scheduler=to_dict(cfg.scheduler),
                             seed=int(cfg.seed))
        return Built(module, [net])

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        from archbench.report.paired import interval, seed_arrays, versus_best
        from archbench.report.replicates import plus_minus, seeds_cell
        from archbench.report.stats import paired_bootstrap

        runs = sorted(runs, key=lambda r: (r.run["data"], -r.get("test/ndcg_at_10")))
        hits = {id(r): seed_arrays(r, lambda saved: saved["hits"]) for r in runs}
        versus = versus_best(runs, hits, paired_bootstrap, lower_is_better=False, digits=3)
        lines = ["## Top-k recommendation", "",
                 "Each user's last interaction, ranked among 99 items the user never interacted with",
                 "(leave-one-out; models selected on the interaction before it). HR@10: share of users",
                 f"whose item is in the top 10 (a random ranking: {10 / 100:.2f}); NDCG@10 also rewards its "
                 "place.",
                 "Higher is better. Mean ± std over seeds; HR@10's 95 % interval from a two-level bootstrap",
                 "over seeds and test users, and each model against the dataset's highest HR@10 (paired",
                 "bootstrap on the shared test users, pooled over seeds; p Holm-corrected, * = significant",
                 "at 5 %).", "",
                 "| dataset | model | seeds | test HR@10 | 95 % CI | Δ HR@10 vs best [95 % CI] | p (Holm) "
                 "| test NDCG@10 | parameters | epochs | train s |",
                 "| --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in runs:
            delta, p_value = versus.get(id(r), ("–", ""))
            lines.append(f"| {r.run['data']} | {r.run['model']} | {seeds_cell(r)} | "
                         f"{plus_minus(r, 'test/hr_at_10', digits=3)} | {interval(hits[id(r)], digits=3)} | "
                         f"{delta} | {p_value} | {plus_minus(r, 'test/ndcg_at_10', digits=3)} | "
                         f"{int(r.get('parameters', 0)):,} | {int(r.get('epochs', 0))} | "
                         f"{r.get('train_seconds'):.1f} |")
        return lines + [""]


TASK = Ranking()
