"""CPU latency per example of a model's logged forward in PyTorch and in onnxruntime (the file
archbench-export writes), at batch 1 and 256, side by side in one process, one thread each.

    python bench/export.py [--repeats 30] [--threads 1]

Weights are freshly initialised (latency does not depend on their values); the inputs are the first
test batch of each pair's embedded data set. Writes reports/benchmarks/export.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import write_report

from archbench.config import compose
from archbench.export import export_with_parity, first_test_batch, in_eval_mode, run_exported
from archbench.train import build

PAIRS = [("digits", "logistic"), ("digits", "mlp"), ("digits", "lenet5"), ("digits", "resnet"),
         ("mnist1d", "cnn"), ("mnist1d", "lstm"), ("mnist1d", "transformer"), ("pydoc_text", "transformer")]
BATCHES = (1, 256)


def per_example_ms(run, batch: torch.Tensor, repeats: int) -> float:
    """Median over ``repeats`` calls of one call's seconds ÷ rows, in milliseconds."""
    run(batch)  # warm-up: allocations, ORT's first-run graph work
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / len(batch)


def measure(data: str, model: str, work: Path, repeats: int, threads: int) -> dict:
    cfg = compose([f"data={data}", f"model={model}", f"paths.data_dir={work / 'data'}",
                   f"paths.output_root={work / 'out'}", f"logger.tracking_uri=sqlite:///{work / 'm.db'}"],
                  output_dir=work / "run")
    cfg, task, _, built = build(cfg)
    net = in_eval_mode(task.exported_model(built.module).cpu())
    test = first_test_batch(cfg, 256)
    path, parity, _ = export_with_parity(net, test, "onnx", work / f"{data}-{model}")
    onnx = run_exported(path, "onnx", threads=threads)

    def torch_run(batch):
        with torch.no_grad():
            return net(batch)

    row = {"data": data, "model": model, "max_abs_diff": parity.max_abs_diff}
    for size in BATCHES:
        batch = test[:size]
        row[f"torch_ms_b{size}"] = per_example_ms(torch_run, batch, repeats)
        row[f"onnx_ms_b{size}"] = per_example_ms(onnx, batch, repeats)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data, model in PAIRS:
            rows.append(measure(data, model, Path(tmp), args.repeats, args.threads))
            print(rows[-1], flush=True)
    lines = ["# Export: PyTorch vs onnxruntime, CPU latency per example", "",
             f"`python bench/export.py --repeats {args.repeats} --threads {args.threads}`: each pair's logged "
             f"forward (classifiers: probabilities; the language model: one step of next-character logits) "
             f"in PyTorch {torch.__version__.split('+')[0]} and in onnxruntime on the ONNX file "
             f"archbench-export writes, {args.threads} thread each, median of {args.repeats} calls, "
             "milliseconds per example. ×: PyTorch time ÷ onnxruntime time (> 1: onnxruntime faster).", "",
             "| data | model | max abs diff | torch b1 | onnx b1 | × b1 | torch b256 | onnx b256 | × b256 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['model']} | {r['max_abs_diff']:.1e} | {r['torch_ms_b1']:.3f} | "
                     f"{r['onnx_ms_b1']:.3f} | {r['torch_ms_b1'] / r['onnx_ms_b1']:.1f} | "
                     f"{r['torch_ms_b256']:.4f} | {r['onnx_ms_b256']:.4f} | "
                     f"{r['torch_ms_b256'] / r['onnx_ms_b256']:.1f} |")
    write_report("export", {"threads": args.threads, "repeats": args.repeats, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
