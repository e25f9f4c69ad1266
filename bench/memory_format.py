"""Channels-last conv weights (``trainer.channels_last``) against PyTorch's default layout, side by side.

Each case is archbench's Trainer path (bench/throughput.py's: the recipe's net, data, batch size and
callbacks; no validation, checkpoint or logger) with the net's 2-D convolution weights in
channels-last memory (``auto``, the default) and in PyTorch's default layout (``false``): samples/s
over the steps after the warm-up, median of the repeats, the two layouts interleaved, at each
``--threads`` count (the pipeline trains at 2 threads, or seeds side by side at 1 each). Then the
same two layouts on one batch: the largest difference between their logits and between their
gradients (same math, different summation order). Cases whose data are not here are skipped.
Writes reports/benchmarks/memory_format.{json,md}.

    python bench/memory_format.py [--steps 60] [--warmup 10] [--repeats 3] [--threads 2 1] [--cases digits:cnn ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from common import REPORTS, write_report
from throughput import missing_shared_file, run_trainer, setup

VISION = ("cnn", "lenet5", "alexnet", "vgg", "inception", "resnet")
CASES = [*(f"digits:{m}" for m in VISION), *(f"mnist:{m}" for m in VISION), "fsdd:cnn"]


def gradient_gap(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Largest |difference| of the logits and of the loss gradients between the two layouts, relative
    to the largest |value|, on one batch with the same weights."""
    from archbench.nets.common import use_channels_last

    results = []
    for channels_last in (False, True):
        copied = copy.deepcopy(net).train(False)  # no dropout: both layouts see the same function
        if channels_last:
            use_channels_last(copied)
        logits = copied(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads = torch.cat([p.grad.flatten() for p in copied.parameters() if p.grad is not None])
        results.append((logits.detach(), grads))
    (logits_a, grads_a), (logits_b, grads_b) = results
    return {"logits": float((logits_a - logits_b).abs().max() / logits_a.abs().max()),
            "gradients": float((grads_a - grads_b).abs().max() / grads_a.abs().max())}


def measure(data: str, model: str, steps: int, warmup: int, repeats: int, tmp: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    cfg, datamodule, fresh_task = setup(data, model, tmp)
    seconds: dict[str, list[float]] = {"channels_last": [], "default": []}
    for repeat in range(repeats):  # interleaved, so drift hits both layouts alike
        for layout in seconds:
            task = fresh_task(switches=layout == "channels_last")
            seconds[layout].append(run_trainer(cfg, datamodule, task, steps, warmup, tmp / f"{layout}{repeat}"))
    batch = int(cfg.data.batch_size)
    rate = {k: (steps - warmup) * batch / statistics.median(v) for k, v in seconds.items()}
    train = datamodule.splits["train"]
    gap = gradient_gap(fresh_task(switches=False).net, train.x[:batch], train.y[:batch])
    return {"data": data, "model": model, "input_shape": list(datamodule.input_shape), "batch": batch,
            "steps": steps, "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
            "seconds": seconds, "samples_per_s": rate, "speedup": rate["channels_last"] / rate["default"],
            "ms_per_step": {k: 1000 * statistics.median(v) / (steps - warmup) for k, v in seconds.items()},
            "relative_gap": gap}


def markdown(rows: list[dict], command: str, skipped: list[str]) -> str:
    lines = ["# Channels-last conv weights against PyTorch's default layout", "",
             f"`{command}` — archbench's Trainer path (bench/throughput.py's) with `trainer.channels_last=auto` "
             "(the default: 2-D convolution weights in channels-last memory) and `=false`, the same "
             "recipe net, data, batch, steps and threads; samples/s after the warm-up, median of the "
             "repeats, interleaved. *gap*: the largest difference between the two layouts' logits, and "
             "between their gradients, on one training batch with the same weights, relative to the "
             "largest value (same math; the NHWC kernels sum in another order).", "",
             "| data | model | input | batch | threads | ms/step default | ms/step channels-last | speed-up | "
             "gap: logits · gradients |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ms, gap = r["ms_per_step"], r["relative_gap"]
        shape = "×".join(str(d) for d in r["input_shape"])
        lines.append(f"| {r['data']} | {r['model']} | {shape} | {r['batch']} | {r['threads']} | {ms['default']:.2f} | "
                     f"{ms['channels_last']:.2f} | {r['speedup']:.2f}× | "
                     f"{gap['logits']:.1e} · {gap['gradients']:.1e} |")
    lines += ["", *(f"Skipped: {reason}" for reason in skipped)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch threads, each in turn")
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--cases", nargs="*", default=CASES, help="data:model pairs (default: %(default)s)")
    args = parser.parse_args(argv)
    command = "python bench/memory_format.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            data, model = case.split(":")
            if missing := missing_shared_file(data):
                skipped.append(f"{case}: no {missing}")
                continue
            for threads in args.threads:
                rows.append(measure(data, model, args.steps, args.warmup, args.repeats, Path(tmp), threads))
                print(case, f"{threads} threads", f"{rows[-1]['speedup']:.2f}x", flush=True)
    write_report("memory_format", {"command": command.strip(), "rows": rows, "skipped": skipped},
                 markdown(rows, command.strip(), skipped), args.out)
    return rows


if __name__ == "__main__":
    main()
