"""Training throughput: archbench's Trainer path vs two hand-written PyTorch loops, side by side.

Same net (the recipe's), data, batch size, step count and thread count for all three:
  trainer  — archbench's ClassificationTask + TensorDataModule under a Lightning Trainer built from
             archbench's own trainer config and callbacks (curves, RNG state); no validation,
             checkpointing or logger, which the hand-written loops do not have either
  loader   — a hand-written loop over a per-sample DataLoader(TensorDataset) (the tutorials' way)
  tensors  — a hand-written loop over pre-shuffled, pre-sliced in-memory tensors
  The hand-written loops build their optimizer as such loops do (torch's default implementation);
  archbench picks torch's fused kernel (same update rule). ``tensors_fused`` is the tensor loop
  with archbench's optimizer, so the table also shows the gap with that difference removed.
  floor    — the trainer path with ``training_step`` cut to forward + loss (no metrics, no checks):
             what Lightning's loop itself costs, to tell its overhead from archbench's
Each path's clock starts after --warmup steps (setup and first-step costs are measured in
bench/overheads.py) and stops after the last step; median of --repeats runs, taken interleaved.
Writes reports/benchmarks/throughput.{json,md}.

    python bench/throughput.py [--steps 300] [--warmup 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from common import REPORTS, SHARED_DATASETS, write_report

MNIST_FILES = SHARED_DATASETS / "mnist"
CASES = [("mnist1d", "mlp"), ("mnist1d", "cnn"), ("mnist1d", "lstm"), ("mnist", "mlp"), ("mnist", "cnn")]


def setup(data: str, model: str, data_dir: Path, overrides: list[str] = ()):
    """The composed config, a loaded datamodule and a factory of identically seeded tasks."""
    from archbench.config import compose
    from archbench.train import build

    extra = [f"data.root={MNIST_FILES}"] if data == "mnist" else []
    cfg = compose([f"data={data}", f"model={model}", f"paths.data_dir={data_dir}", "data.augment_shift=0",
                   "callbacks.progress_bar=none", "callbacks.checkpoint.enabled=false",
                   "callbacks.early_stopping.enabled=false", *extra, *overrides],
                  output_dir=data_dir / "unused")
    cfg, task, datamodule, _ = build(cfg)

    def fresh_task():
        torch.manual_seed(0)
        return task.build(cfg, datamodule.meta, datamodule).module

    return cfg, datamodule, fresh_task


def minimal_training_step(self, batch, batch_idx: int) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(self.net(x), y)


def run_trainer(cfg, datamodule, task, steps: int, warmup: int, out_dir: Path, floor: bool = False) -> float:
    """Seconds for steps ``warmup..steps`` of archbench's Trainer path."""
    import types

    import pytorch_lightning as pl

    if floor:
        task.training_step = types.MethodType(minimal_training_step, task)

    from archbench.train import _trainer_kwargs, build_callbacks

    class StepClock(pl.Callback):
        started = stopped = 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if trainer.global_step == warmup:
                self.started = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.stopped = time.perf_counter()

    clock = StepClock()
    # LearningRateMonitor only writes to a logger, and this path runs without one
    callbacks = [c for c in build_callbacks(cfg, out_dir, cfg.callbacks.monitor, cfg.callbacks.mode)[0] if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    kwargs = {**_trainer_kwargs(cfg), "max_epochs": -1, "min_epochs": None, "max_steps": steps,
              "limit_val_batches": 0, "enable_checkpointing": False, "enable_model_summary": False}
    trainer = pl.Trainer(**kwargs, logger=False, callbacks=[*callbacks, clock], default_root_dir=str(out_dir))
    trainer.fit(task, datamodule=datamodule)
    return clock.stopped - clock.started


def _timed_steps(batches: Iterator, task, steps: int, warmup: int, fused: bool = False) -> float:
    """Seconds for plain optimisation steps ``warmup..steps`` over ``batches`` (fetching included)."""
    from archbench.tasks.optim import build_optimizer

    net = task.net.train()
    optimizer = build_optimizer(net.parameters(), {**task.optimizer_cfg, "fused": fused})
    started = 0.0
    for step, (xb, yb) in zip(range(steps), batches, strict=False):
        if step == warmup:
            started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def run_loader(x, y, task, batch: int, steps: int, warmup: int) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)

    def batches():
        while True:
            yield from loader

    return _timed_steps(batches(), task, steps, warmup)


def run_tensors(x, y, task, batch: int, steps: int, warmup: int, fused: bool = False) -> float:
    def batches():
        while True:
            order = torch.randperm(len(y))
            for start in range(0, len(y) - batch + 1, batch):
                index = order[start : start + batch]
                yield x[index], y[index]

    return _timed_steps(batches(), task, steps, warmup, fused)


def measure(data: str, model: str, steps: int, warmup: int, repeats: int, tmp: Path) -> dict:
    cfg, datamodule, fresh_task = setup(data, model, tmp)
    x, y = datamodule.splits["train"].x, datamodule.splits["train"].y
    batch = int(cfg.data.batch_size)
    seconds: dict[str, list[float]] = {"trainer": [], "loader": [], "tensors": [], "floor": [],
                                       "tensors_fused": []}
    for repeat in range(repeats):  # interleaved, so drift hits all paths alike
        seconds["trainer"].append(run_trainer(cfg, datamodule, fresh_task(), steps, warmup, tmp / f"run{repeat}"))
        seconds["floor"].append(run_trainer(cfg, datamodule, fresh_task(), steps, warmup, tmp / f"floor{repeat}",
                                            floor=True))
        seconds["loader"].append(run_loader(x, y, fresh_task(), batch, steps, warmup))
        seconds["tensors"].append(run_tensors(x, y, fresh_task(), batch, steps, warmup))
        seconds["tensors_fused"].append(run_tensors(x, y, fresh_task(), batch, steps, warmup, fused=True))
    timed = (steps - warmup) * batch
    rate = {k: timed / statistics.median(v) for k, v in seconds.items()}
    return {"data": data, "model": model, "input_shape": list(datamodule.input_shape), "batch": batch,
            "steps": steps, "warmup": warmup, "threads": torch.get_num_threads(),
            "samples_per_s": rate, "seconds": seconds,
            "trainer_vs_loader": rate["trainer"] / rate["loader"],
            "trainer_vs_tensors": rate["trainer"] / rate["tensors"],
            "floor_vs_tensors": rate["floor"] / rate["tensors"],
            "trainer_vs_tensors_fused": rate["trainer"] / rate["tensors_fused"],
            "ms_per_step": {k: 1000 * statistics.median(v) / (steps - warmup) for k, v in seconds.items()}}


def markdown(rows: list[dict], command: str, skipped: list[str]) -> str:
    lines = ["# Training throughput: archbench Trainer path vs hand-written loops", "",
             f"`{command}` — the same net (the recipe's), data, batch size, steps and torch threads; "
             "samples/s over the steps after the warm-up, median of the repeats, taken interleaved in one "
             "run. Targets: trainer ≥ 1.0× the per-sample DataLoader loop and ≥ 0.9× the tensor loop.", "",
             "| data | model | input | batch | trainer samples/s | DataLoader loop | tensor loop | "
             "trainer ÷ DataLoader | trainer ÷ tensors | trainer ÷ tensors, fused optimizer | "
             "ms/step trainer · Lightning floor · tensors |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        s, ms = r["samples_per_s"], r["ms_per_step"]
        shape = "×".join(str(d) for d in r["input_shape"])
        lines.append(f"| {r['data']} | {r['model']} | {shape} | {r['batch']} | {s['trainer']:,.0f} | "
                     f"{s['loader']:,.0f} | {s['tensors']:,.0f} | {r['trainer_vs_loader']:.2f}× | "
                     f"{r['trainer_vs_tensors']:.2f}× | {r['trainer_vs_tensors_fused']:.2f}× | "
                     f"{ms['trainer']:.2f} · {ms['floor']:.2f} · {ms['tensors']:.2f} |")
    lines += ["", f"{rows[0]['threads'] if rows else '?'} torch threads. The trainer path logs its training "
              "metrics once per epoch (torchmetrics states updated per step, `archbench.tasks.epoch_metrics`). "
              "The hand-written loops build their optimizer with torch's defaults, as such loops do; "
              "archbench uses torch's fused kernel (`optimizer.fused`, same update rule), and the "
              "*fused optimizer* column compares against a tensor loop that does too. "
              "*Lightning floor*: the same Trainer with `training_step` cut to forward + loss; "
              "floor − fused tensor loop is Lightning's own per-step cost, trainer − floor is "
              "archbench's (metrics, the finite-loss check)."]
    lines += [f"Skipped: {reason}" for reason in skipped]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--cases", nargs="*", default=[f"{d}:{m}" for d, m in CASES],
                        help="data:model pairs (default: %(default)s)")
    args = parser.parse_args(argv)
    command = "python bench/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            data, model = case.split(":")
            if data == "mnist" and not (MNIST_FILES / "t10k-images-idx3-ubyte.gz").is_file():
                skipped.append(f"{case}: no MNIST files in {MNIST_FILES}")
                continue
            rows.append(measure(data, model, args.steps, args.warmup, args.repeats, Path(tmp)))
            print(case, {k: round(v) for k, v in rows[-1]["samples_per_s"].items()}, flush=True)
    write_report("throughput", {"command": command.strip(), "rows": rows, "skipped": skipped},
                 markdown(rows, command.strip(), skipped), args.out)
    return rows


if __name__ == "__main__":
    main()
