"""The compiled optimizer update (``optimizer.compile``) against torch's eager ones, side by side.

For a recipe whose optimizer has no fused kernel (SST-2's Kim cnn trains with Adadelta), on the
recipe's own net (its parameters, most of them the word embedding):
  update  — ms per optimizer step alone (the same random gradients every step): torch's default
            implementation on CPU (a loop of elementwise ops per tensor), its ``foreach`` one
            (the ops batched over tensors) and the compiled one; median of --repeats, interleaved
  compile — seconds of the compiled update's first call (torch.compile's tracing and C++ build,
            a cold cache at the first repeat; inductor caches the build on disk for the next ones)
  trainer — archbench's Trainer path (bench/throughput.py's: the recipe's net, data, batch size and
            callbacks; no validation, checkpoint or logger) with ``optimizer.compile`` false and
            true: samples/s over the steps after the warm-up (the compilation falls in the warm-up)
  gap     — the largest |difference| of the weights after 20 updates, eager against compiled,
            relative to the largest |weight| (the same update, other rounding)
at each ``--threads`` count (the text pipeline trains its seeds side by side at 1 thread each).
A case is ``data:model`` (the recipe's optimizer) or ``data:model:optimizer`` (conf/optimizer's).
Cases whose data are not here are skipped. Writes reports/benchmarks/optimizer_step.{json,md}.

    python bench/optimizer_step.py [--steps 300] [--warmup 20] [--repeats 3] [--threads 1 2] [--cases sst2:cnn]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPORTS, write_report
from throughput import missing_shared_file, run_trainer, setup

CASES = ["sst2:cnn"]
UPDATES = ("default", "foreach", "compiled")


def _optimizer(params: list[torch.nn.Parameter], optimizer_cfg: dict, update: str) -> torch.optim.Optimizer:
    from archbench.tasks.optim import build_optimizer

    optimizer = build_optimizer(params, {**optimizer_cfg, "compile": update == "compiled"})
    if update in ("default", "foreach"):
        for group in optimizer.param_groups:
            group["foreach"] = update == "foreach"
    return optimizer


def _with_gradients(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    """A copy of ``net``'s parameters, each with a fixed random gradient."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(p.detach().clone()) for p in net.parameters()]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-2
    return params


def time_update(net: torch.nn.Module, optimizer_cfg: dict, update: str, calls: int) -> tuple[float, float]:
    """(ms per update after the first, seconds of the first call)."""
    optimizer = _optimizer(_with_gradients(net), optimizer_cfg, update)
    started = time.perf_counter()
    optimizer.step()
    first = time.perf_counter() - started
    for _ in range(3):
        optimizer.step()
    started = time.perf_counter()
    for _ in range(calls):
        optimizer.step()
    return (time.perf_counter() - started) / calls * 1e3, first


def weight_gap(net: torch.nn.Module, optimizer_cfg: dict, updates: int = 20) -> float:
    weights = []
    for update in ("default", "compiled"):
        params = _with_gradients(net)
        optimizer = _optimizer(params, optimizer_cfg, update)
        for _ in range(updates):
            optimizer.step()
        weights.append(torch.cat([p.detach().flatten() for p in params]))
    return float((weights[0] - weights[1]).abs().max() / weights[0].abs().max())


def measure(case: str, steps: int, warmup: int, repeats: int, tmp: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    data, model, *optimizer = case.split(":")
    cfg, datamodule, fresh_task = setup(data, model, tmp, [f"optimizer={o}" for o in optimizer])
    net = fresh_task().net
    optimizer_cfg = {k: v for k, v in fresh_task().optimizer_cfg.items() if k != "compile"}
    update_ms: dict[str, list[float]] = {u: [] for u in UPDATES}
    compile_s: list[float] = []
    seconds: dict[str, list[float]] = {"eager": [], "compiled": []}
    for repeat in range(repeats):  # interleaved, so drift hits every variant alike
        for update in UPDATES:
            ms, first = time_update(net, optimizer_cfg, update, calls=50)
            update_ms[update].append(ms)
            if update == "compiled":
                compile_s.append(first)
        for mode in seconds:
            task = fresh_task()
            task.optimizer_cfg = {**optimizer_cfg, "compile": mode == "compiled"}
            seconds[mode].append(run_trainer(cfg, datamodule, task, steps, warmup, tmp / f"{mode}{repeat}"))
    batch = int(cfg.data.batch_size)
    rate = {k: (steps - warmup) * batch / statistics.median(v) for k, v in seconds.items()}
    return {"data": data, "model": model, "threads": threads, "optimizer": optimizer_cfg["name"],
            "parameters": sum(p.numel() for p in net.parameters()), "batch": batch,
            "steps": steps, "warmup": warmup, "repeats": repeats,
            "update_ms": {k: statistics.median(v) for k, v in update_ms.items()}, "update_ms_runs": update_ms,
            "compile_s": compile_s, "trainer_seconds": seconds, "samples_per_s": rate,
            "trainer_ratio": rate["compiled"] / rate["eager"], "weight_gap": weight_gap(net, optimizer_cfg)}


def markdown(rows: list[dict], command: str, skipped: list[str]) -> str:
    lines = ["# Compiled optimizer update (`optimizer.compile`) against torch's eager ones", "",
             f"`{command}` — the recipe's net and optimizer; medians of the repeats, taken interleaved in one run.", "",
             "| data | model | optimizer | parameters | threads | update ms: default · foreach · compiled "
             "| compiled ÷ default | first compiled call, s | trainer samples/s: eager · compiled | trainer compiled ÷ eager "
             "| weight gap after 20 updates |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: |"]
    for r in rows:
        ms = r["update_ms"]
        lines.append(
            f"| {r['data']} | {r['model']} | {r['optimizer']} | {r['parameters']:,} | {r['threads']} "
            f"| {ms['default']:.2f} · {ms['foreach']:.2f} · {ms['compiled']:.2f} | {ms['default'] / ms['compiled']:.1f}× "
            f"| {' · '.join(f'{s:.1f}' for s in r['compile_s'])} "
            f"| {r['samples_per_s']['eager']:,.0f} · {r['samples_per_s']['compiled']:,.0f} | {r['trainer_ratio']:.2f}× "
            f"| {r['weight_gap']:.1e} |")
    lines += ["", "*update ms*: one optimizer step on fixed random gradients, after 3 untimed ones; *default* is "
              "torch's implementation on CPU (a loop of elementwise ops per tensor), *foreach* batches each op over "
              "the tensors, *compiled* is `optimizer.compile=true` (torch.compile of the step: one generated loop "
              "per tensor). *first compiled call*: the compilation, per repeat (the first with a cold inductor "
              "cache unless an earlier run filled it). *trainer*: archbench's Trainer path over the steps after the "
              "warm-up, in which the compilation falls; a training pays it once per process. *weight gap*: the same "
              "update rule, rounded differently."]
    if skipped:
        lines += ["", "Skipped (data not on this machine): " + ", ".join(skipped)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="*", default=CASES)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            needed = missing_shared_file(case.split(":")[0])
            if needed:
                skipped.append(f"{case} ({needed} missing)")
                continue
            for threads in args.threads:
                rows.append(measure(case, args.steps, args.warmup, args.repeats, Path(tmp), threads))
    command = "python bench/optimizer_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report("optimizer_step", {"command": command.strip(), "rows": rows, "skipped": skipped},
                 markdown(rows, command.strip(), skipped), args.out)
    return rows


if __name__ == "__main__":
    main()
