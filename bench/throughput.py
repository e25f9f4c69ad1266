"""Training throughput: archbench's Trainer path vs two hand-written PyTorch loops, side by side.

Same net, data, batch size, step count and thread count for all three:
  trainer  — archbench's ClassificationTask + TensorDataModule under a Lightning Trainer
  loader   — a hand-written loop over a per-sample DataLoader(TensorDataset) (the tutorials' way)
  tensors  — a hand-written loop over pre-shuffled, pre-sliced in-memory tensors
Median samples/s of --repeats runs each; writes reports/benchmarks/throughput.{json,md}.

    python bench/throughput.py [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = [("mnist1d", "mlp"), ("mnist1d", "cnn"), ("mnist1d", "lstm")]


def setup(data: str, model: str, data_dir: Path):
    from archbench.config import compose, to_dict
    from archbench.data.prepare import ensure_prepared
    from archbench.train import build_datamodule, build_net, build_task

    cfg = compose([f"data={data}", f"model={model}", f"paths.data_dir={data_dir}", "data.augment_shift=0"],
                  output_dir=data_dir / "unused")
    meta = ensure_prepared(to_dict(cfg.data))
    datamodule = build_datamodule(cfg, meta)
    datamodule.load()

    def fresh_task():
        torch.manual_seed(0)
        return build_task(cfg, build_net(cfg.model, datamodule.input_shape, meta.num_classes), meta)

    return cfg, datamodule, fresh_task


def run_trainer(datamodule, task, steps: int) -> float:
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    return time.perf_counter() - started


def _optimizer(task):
    from archbench.tasks.optim import build_optimizer

    return build_optimizer(task.net.parameters(), task.optimizer_cfg)


def _timed_steps(batches, task, steps: int) -> float:
    """Seconds for ``steps`` plain optimisation steps over ``batches`` (fetching them included)."""
    optimizer, net = _optimizer(task), task.net.train()
    started = time.perf_counter()
    for _, (xb, yb) in zip(range(steps), batches, strict=False):
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def run_loader(x, y, task, batch: int, steps: int) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)

    def batches():
        while True:
            yield from loader

    return _timed_steps(batches(), task, steps)


def run_tensors(x, y, task, batch: int, steps: int) -> float:
    def batches():
        while True:
            order = torch.randperm(len(y))
            for start in range(0, len(y) - batch + 1, batch):
                index = order[start : start + batch]
                yield x[index], y[index]

    return _timed_steps(batches(), task, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data, model in CASES:
            cfg, datamodule, fresh_task = setup(data, model, Path(tmp))
            x, y = datamodule.splits["train"].x, datamodule.splits["train"].y
            batch = int(cfg.data.batch_size)
            seconds = {"trainer": [], "loader": [], "tensors": []}
            for _ in range(args.repeats):  # interleaved, so drift hits all three alike
                seconds["trainer"].append(run_trainer(datamodule, fresh_task(), args.steps))
                seconds["loader"].append(run_loader(x, y, fresh_task(), batch, args.steps))
                seconds["tensors"].append(run_tensors(x, y, fresh_task(), batch, args.steps))
            rate = {k: args.steps * batch / statistics.median(v) for k, v in seconds.items()}
            rows.append({"data": data, "model": model, "batch": batch, "steps": args.steps,
                         "threads": torch.get_num_threads(), "samples_per_s": rate, "seconds": seconds,
                         "trainer_vs_loader": rate["trainer"] / rate["loader"],
                         "trainer_vs_tensors": rate["trainer"] / rate["tensors"]})
            print(data, model, {k: round(v) for k, v in rate.items()}, flush=True)
    out = ROOT / "reports" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    lines = ["# Training throughput: archbench Trainer path vs hand-written loops", "",
             f"`python bench/throughput.py --steps {args.steps} --repeats {args.repeats}`: the same net, "
             "data, batch size, steps and torch threads; median of the repeats, taken interleaved in one "
             "run. Targets: trainer ≥ 1.0× the per-sample DataLoader loop, ≥ 0.9× the tensor loop.", "",
             "| data | model | batch | threads | trainer samples/s | DataLoader loop | tensor loop | "
             "trainer ÷ DataLoader | trainer ÷ tensors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        s = r["samples_per_s"]
        lines.append(f"| {r['data']} | {r['model']} | {r['batch']} | {r['threads']} | {s['trainer']:,.0f} | "
                     f"{s['loader']:,.0f} | {s['tensors']:,.0f} | {r['trainer_vs_loader']:.2f}× | "
                     f"{r['trainer_vs_tensors']:.2f}× |")
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
