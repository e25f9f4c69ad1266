"""Training throughput: archbench's Trainer path vs two hand-written PyTorch loops, side by side.

Same net (the recipe's), data, batch size, step count and thread count for all three:
  trainer  — archbench's ClassificationTask + TensorDataModule under a Lightning Trainer built from
             archbench's own trainer config and callbacks (curves, RNG state); no validation,
             checkpointing or logger, which the hand-written loops do not have either
  loader   — a hand-written loop over a per-sample DataLoader(TensorDataset) (the tutorials' way)
  tensors  — a hand-written loop over pre-shuffled, pre-sliced in-memory tensors
  The hand-written loops build their optimizer and net as such loops do (torch's default optimizer
  implementation and memory layout); archbench picks torch's fused optimizer kernel (same update
  rule) and channels-last conv weights (``trainer.channels_last``, same math). ``tensors_own`` is
  the tensor loop with archbench's kernels, so the table also shows the gap with those removed.
  floor    — the trainer path with ``training_step`` cut to forward + loss, plus one Lightning
             ``self.log`` per training metric on each epoch's last batch (no sums, no checks): what
             Lightning's loop and its logging of the epoch's metrics cost, to tell them from archbench's
  replicas — the trainer path in --replicas processes of 1 torch thread each, started together, as
             the pipeline's joblib launcher trains seeds side by side: samples/s per replica and in
             total (beside the one-process trainer path at the run's thread count)
Each path's clock starts after --warmup steps (setup and first-step costs are measured in
bench/overheads.py) and stops after the last step; median of --repeats runs, taken interleaved.
Writes reports/benchmarks/throughput.{json,md}.

Targets (issue 16), by the size of the step itself (the tensor loop's with archbench's kernels, ms/step): below 5 ms,
archbench's own cost (trainer − floor) ≤ 5 % of the floor and trainer ≥ 0.9× the DataLoader loop;
from 5 ms, trainer ≥ 1.0× the DataLoader loop and ≥ 0.9× the tensor loop.

    python bench/throughput.py [--steps 300] [--warmup 20] [--repeats 3] [--replicas 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from common import REPORTS, SHARED_DATASETS, write_report

# data sets read from ../shared/datasets/<name> (setup points data.root there): a file each must hold
SHARED_FILES = {"mnist": "mnist/t10k-images-idx3-ubyte.gz", "fsdd": "fsdd/recordings/0_george_0.wav",
                "sst2": "sst2/train.tsv"}
CASES = [("mnist1d", "mlp"), ("mnist1d", "cnn"), ("mnist1d", "lstm"), ("mnist", "mlp"), ("mnist", "cnn")]
SMALL_STEP_MS = 5.0  # below it (tensor loop, archbench's kernels), the small-step targets apply


def setup(data: str, model: str, data_dir: Path, overrides: list[str] = ()):
    """The composed config, a loaded datamodule and a factory of identically seeded tasks."""
    from archbench.config import compose
    from archbench.train import apply_net_switches, build

    extra = [f"data.root={SHARED_DATASETS / data}"] if data in SHARED_FILES else []
    cfg = compose([f"data={data}", f"model={model}", f"paths.data_dir={data_dir}", "data.augment_shift=0",
                   "callbacks.progress_bar=none", "callbacks.checkpoint.enabled=false",
                   "callbacks.early_stopping.enabled=false", *extra, *overrides],
                  output_dir=data_dir / "unused")
    cfg, task, datamodule, _ = build(cfg)

    def fresh_task(switches: bool = True):
        """A seeded task; its nets with archbench's switches (channels-last) unless ``switches`` is false."""
        torch.manual_seed(0)
        built = task.build(cfg, datamodule.meta, datamodule)
        if switches:
            apply_net_switches(cfg, built.nets)
        return built.module

    return cfg, datamodule, fresh_task


def missing_shared_file(data: str) -> Path | None:
    """The file of SHARED_FILES that ``data`` needs and this machine lacks, if any."""
    needed = SHARED_DATASETS / SHARED_FILES[data] if data in SHARED_FILES else None
    return needed if needed and not needed.is_file() else None


def minimal_training_step(self, batch, batch_idx: int) -> torch.Tensor:
    """Forward + loss, and on the epoch's last batch one ``self.log`` per training metric the task
    reports, through the trainer path's own ``log_mean``: the least a Lightning module that reports
    its epoch's training metrics pays Lightning (its ``self.log`` is Lightning's cost, not archbench's)."""
    x, y = batch
    loss = torch.nn.functional.cross_entropy(self.net(x), y)
    if self._trainer.is_last_batch:
        for name in self.train_metrics.names:
            self.train_metrics.log_mean(self, name, loss.detach(), len(y))
    return loss


def run_trainer(cfg, datamodule, task, steps: int, warmup: int, out_dir: Path, floor: bool = False,
                epoch_ends: list[list[float]] | None = None, inside: list[float] | None = None) -> float:
    """Seconds for steps ``warmup..steps`` of archbench's Trainer path; ``epoch_ends`` gets one more
    entry: the seconds its training metrics spent handing the epoch's sums to Lightning then, and
    the part of them inside Lightning's ``self.log``; ``inside`` gets the seconds of those steps
    spent inside ``training_step``."""
    import types

    import pytorch_lightning as pl

    if floor:
        task.training_step = types.MethodType(minimal_training_step, task)
    elif epoch_ends is not None:
        _time_epoch_ends(task, warmup, epoch_ends)
    if inside is not None:
        _time_training_steps(task, warmup, inside)

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


def _time_epoch_ends(task, warmup: int, spent: list[list[float]]) -> None:
    """Wraps the task's ``train_metrics.log_if_epoch_ends``: appends an entry ``[hand-over, in
    self.log]`` to ``spent`` and adds the seconds of its epoch-end calls after the warm-up (scoring,
    torchmetrics updates, ``self.log``), and of the Lightning ``self.log`` calls inside them."""
    metrics, hand_over, log = task.train_metrics, task.train_metrics.log_if_epoch_ends, task.log
    spent.append([0.0, 0.0])
    in_log = [0.0]

    def timed_log(*args, **kwargs) -> None:
        started = time.perf_counter()
        log(*args, **kwargs)
        in_log[0] += time.perf_counter() - started

    def timed(module) -> None:
        in_log[0] = 0.0
        started = time.perf_counter()
        hand_over(module)
        # self.log ran: the epoch's last batch (no per-step trainer lookups added to the timed path)
        if in_log[0] and module._trainer.global_step >= warmup:
            spent[-1][0] += time.perf_counter() - started
            spent[-1][1] += in_log[0]

    metrics.log_if_epoch_ends = timed  # instance attributes shadow the methods
    task.log = timed_log


def _time_training_steps(task, warmup: int, inside: list[float]) -> None:
    """Wraps the task's ``training_step`` (archbench's, or the floor's forward + loss): appends an
    entry to ``inside`` and adds the seconds spent in it on the steps after the warm-up. Their
    difference between trainer and floor is archbench's own code, measured without the noise of the
    backward pass and Lightning's loop around it."""
    import types

    step = task.training_step
    inside.append(0.0)
    counted = [0]

    def timed(self, batch, batch_idx: int):
        started = time.perf_counter()
        loss = step(batch, batch_idx)
        spent = time.perf_counter() - started
        counted[0] += 1
        if counted[0] > warmup:  # one call per optimizer step: the StepClock's warm-up
            inside[-1] += spent
        return loss

    task.training_step = types.MethodType(timed, task)


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


def _replica_worker(data: str, model: str, steps: int, warmup: int, tmp: str, index: int,
                    barrier, results) -> None:
    """One replica: 1 torch thread, its own seeded task, timed from the common start."""
    torch.set_num_threads(1)
    cfg, datamodule, fresh_task = setup(data, model, Path(tmp))
    task = fresh_task()
    barrier.wait()
    results.put((index, run_trainer(cfg, datamodule, task, steps, warmup, Path(tmp) / f"replica{index}")))


def run_replicas(data: str, model: str, count: int, steps: int, warmup: int, tmp: Path) -> list[float]:
    """Seconds of each of ``count`` trainer-path processes running side by side."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    workers = [context.Process(target=_replica_worker, args=(data, model, steps, warmup, str(tmp), i,
                                                             barrier, results)) for i in range(count)]
    for worker in workers:
        worker.start()
    seconds = dict(results.get(timeout=900) for _ in workers)
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"replica process exited with {worker.exitcode}")
    return [seconds[i] for i in range(count)]


def verdicts(ms: dict[str, float], rate: dict[str, float]) -> dict[str, object]:
    """The issue's per-step targets for this row, by the size of the step itself."""
    own = (ms["trainer"] - ms["floor"]) / ms["floor"]
    small = ms["tensors_own"] < SMALL_STEP_MS
    checks = ({"archbench ≤ 5 % over floor": own <= 0.05,
               "≥ 0.9× DataLoader loop": rate["trainer"] / rate["loader"] >= 0.9} if small else
              {"≥ 1.0× DataLoader loop": rate["trainer"] / rate["loader"] >= 1.0,
               "≥ 0.9× tensor loop": rate["trainer"] / rate["tensors"] >= 0.9})
    return {"step": "small" if small else "large", "archbench_over_floor": own, "targets": checks}


def _median_and_quartiles(values: list[float]) -> tuple[float, list[float]]:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return statistics.median(values), [quartiles[0], quartiles[2]]


def own_cost(seconds: dict[str, list[float]], epoch_ends: list[list[float]],
             inside: dict[str, list[float]], timed_steps: int) -> dict:
    """archbench over the floor paired per repeat (median and quartiles: drift between repeats
    cancels); the same measured inside ``training_step`` alone (trainer's minus floor's seconds
    there, over the floor's whole step time); and the share of the trainer's time spent handing
    epoch sums to Lightning (and, of that, inside Lightning's ``self.log``)."""
    paired, quartiles = _median_and_quartiles(
        [t / f - 1 for t, f in zip(seconds["trainer"], seconds["floor"], strict=True)])
    own_seconds = [t - f for t, f in zip(inside["trainer"], inside["floor"], strict=True)]
    step_own, step_own_quartiles = _median_and_quartiles(
        [own / floor for own, floor in zip(own_seconds, seconds["floor"], strict=True)])
    return {"paired_over_floor": paired, "paired_quartiles": quartiles,
            "in_training_step": step_own, "in_training_step_quartiles": step_own_quartiles,
            "in_training_step_us": 1e6 * statistics.median(own_seconds) / timed_steps,
            "epoch_end_share": statistics.median(e / t for (e, _), t in zip(epoch_ends, seconds["trainer"], strict=True)),
            "epoch_end_log_share": statistics.median(g / t for (_, g), t in zip(epoch_ends, seconds["trainer"], strict=True))}


def measure(data: str, model: str, steps: int, warmup: int, repeats: int, tmp: Path,
            replicas: int = 0) -> dict:
    cfg, datamodule, fresh_task = setup(data, model, tmp)
    x, y = datamodule.splits["train"].x, datamodule.splits["train"].y
    batch = int(cfg.data.batch_size)
    seconds: dict[str, list[float]] = {"trainer": [], "loader": [], "tensors": [], "floor": [],
                                       "tensors_own": []}
    epoch_ends: list[list[float]] = []
    inside: dict[str, list[float]] = {"trainer": [], "floor": []}
    for repeat in range(repeats):  # interleaved, so drift hits all paths alike
        seconds["trainer"].append(run_trainer(cfg, datamodule, fresh_task(), steps, warmup, tmp / f"run{repeat}",
                                              epoch_ends=epoch_ends, inside=inside["trainer"]))
        seconds["floor"].append(run_trainer(cfg, datamodule, fresh_task(), steps, warmup, tmp / f"floor{repeat}",
                                            floor=True, inside=inside["floor"]))
        seconds["loader"].append(run_loader(x, y, fresh_task(switches=False), batch, steps, warmup))
        seconds["tensors"].append(run_tensors(x, y, fresh_task(switches=False), batch, steps, warmup))
        seconds["tensors_own"].append(run_tensors(x, y, fresh_task(), batch, steps, warmup, fused=True))
    timed = (steps - warmup) * batch
    rate = {k: timed / statistics.median(v) for k, v in seconds.items()}
    ms = {k: 1000 * statistics.median(v) / (steps - warmup) for k, v in seconds.items()}
    replica_seconds = [run_replicas(data, model, replicas, steps, warmup, tmp) for _ in range(repeats)] \
        if replicas else []
    per_replica = [timed / statistics.median(s) for s in zip(*replica_seconds, strict=True)]
    return {"data": data, "model": model, "input_shape": list(datamodule.input_shape), "batch": batch,
            "steps": steps, "warmup": warmup, "repeats": repeats, "threads": torch.get_num_threads(),
            "samples_per_s": rate, "seconds": seconds, "seconds_in_training_step": inside, **verdicts(ms, rate),
            "own_cost": own_cost(seconds, epoch_ends, inside, steps - warmup),
            "replicas": {"count": replicas, "threads_each": 1, "seconds": replica_seconds,
                         "samples_per_s": per_replica, "total_samples_per_s": sum(per_replica),
                         "total_vs_trainer": sum(per_replica) / rate["trainer"]} if replicas else None,
            "trainer_vs_loader": rate["trainer"] / rate["loader"],
            "trainer_vs_tensors": rate["trainer"] / rate["tensors"],
            "floor_vs_tensors": rate["floor"] / rate["tensors"],
            "trainer_vs_tensors_own": rate["trainer"] / rate["tensors_own"], "ms_per_step": ms}


def markdown(rows: list[dict], command: str, skipped: list[str]) -> str:
    lines = ["# Training throughput: archbench Trainer path vs hand-written loops", "",
             f"`{command}` — the same net (the recipe's), data, batch size, steps and torch threads; "
             "samples/s over the steps after the warm-up, median of the repeats, taken interleaved in one "
             "run. Targets by the size of the step itself (tensor loop, archbench's kernels): below "
             f"{SMALL_STEP_MS:g} ms, archbench's own cost ≤ 5 % over Lightning's floor and trainer ≥ 0.9× "
             "the per-sample DataLoader loop; from "
             f"{SMALL_STEP_MS:g} ms, trainer ≥ 1.0× the DataLoader loop and ≥ 0.9× the tensor loop.", "",
             "| data | model | input | batch | trainer samples/s | DataLoader loop | tensor loop | "
             "trainer ÷ DataLoader | trainer ÷ tensors | trainer ÷ tensors, archbench's kernels | "
             "ms/step trainer · Lightning floor · tensors, archbench's kernels | archbench over floor | targets |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in rows:
        s, ms = r["samples_per_s"], r["ms_per_step"]
        shape = "×".join(str(d) for d in r["input_shape"])
        met = "; ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in r["targets"].items())
        lines.append(f"| {r['data']} | {r['model']} | {shape} | {r['batch']} | {s['trainer']:,.0f} | "
                     f"{s['loader']:,.0f} | {s['tensors']:,.0f} | {r['trainer_vs_loader']:.2f}× | "
                     f"{r['trainer_vs_tensors']:.2f}× | {r['trainer_vs_tensors_own']:.2f}× | "
                     f"{ms['trainer']:.2f} · {ms['floor']:.2f} · {ms['tensors_own']:.2f} | "
                     f"{100 * r['archbench_over_floor']:+.1f} % | {met} ({r['step']} step) |")
    lines += ["", f"{rows[0]['threads'] if rows else '?'} torch threads. The trainer path accumulates its "
              "training metrics as plain sums per step and logs each mean once per epoch "
              "(`archbench.tasks.epoch_metrics`), and runs deterministic kernels without torch's NaN fill "
              "of new tensors (`DeterministicWithoutFill`). "
              "The hand-written loops build their optimizer and net with torch's defaults, as such "
              "loops do; archbench uses torch's fused optimizer kernel (`optimizer.fused`, same update "
              "rule) and, for nets with 2-D convolutions, channels-last weights "
              "(`trainer.channels_last`, same math, NHWC kernels), and the *archbench's kernels* "
              "column compares against a tensor loop that does both. "
              "*Lightning floor*: the same Trainer with `training_step` cut to forward + loss, plus "
              "the same `self.log` per training metric on each epoch's last batch (Lightning's cost of "
              "logging an epoch's metrics, which every module reporting them pays); floor − tensor "
              "loop with archbench's kernels is Lightning's own per-step cost, trainer − floor is archbench's (the "
              "running sums, scoring, the finite-loss check). Before 2026-12-06 the floor logged "
              "nothing, so archbench's figures over it included Lightning's `self.log` calls (the "
              "*in `self.log`* column below)."]
    lines += ["", "## Where archbench's own cost goes", "",
              "*paired*: trainer ÷ floor − 1 per repeat (both run back to back), median [quartiles]; "
              "*inside `training_step`*: the seconds the trainer spent in `training_step` minus the "
              "floor's there (forward + loss, its epoch-end `self.log`), over the floor's whole step time, per repeat, median "
              "[quartiles] (µs a step): archbench's own code timed directly, without the noise of the "
              "backward pass and the loop around it (not the extra cache misses it may cause there); "
              "*epoch-end hand-over*: share of the trainer's timed seconds spent in "
              "`TrainEpochMetrics.log_if_epoch_ends` on each epoch's last batch (scoring the buffered "
              "batches, one Lightning `self.log` per metric), and of it "
              "*in `self.log`*: inside those Lightning calls (each moves its result entry, metadata "
              "included, to the device; the floor pays them too); the rest of "
              "the cost is per step (the finite-loss read, the running sums, buffering scores).", "",
              "| data | model | steps × repeats | over floor, medians | paired [quartiles] | "
              "inside `training_step` [quartiles] | epoch-end hand-over | of it in `self.log` |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        own = r["own_cost"]
        low, high = own["paired_quartiles"]
        lines.append(f"| {r['data']} | {r['model']} | {r['steps']} × {r.get('repeats', '?')} | "
                     f"{100 * r['archbench_over_floor']:+.1f} % | "
                     f"{100 * own['paired_over_floor']:+.1f} % [{100 * low:+.1f}, {100 * high:+.1f}] | "
                     f"{100 * own['in_training_step']:+.1f} % [{100 * own['in_training_step_quartiles'][0]:+.1f}, "
                     f"{100 * own['in_training_step_quartiles'][1]:+.1f}] ({own['in_training_step_us']:.0f} µs) | "
                     f"{100 * own['epoch_end_share']:.1f} % | {100 * own['epoch_end_log_share']:.1f} % |")
    replicated = [r for r in rows if r.get("replicas")]
    if replicated:
        count = replicated[0]["replicas"]["count"]
        lines += ["", f"## Replicas path: {count} trainings side by side", "",
                  f"{count} processes of 1 torch thread each, each its own seeded task and trainer path, "
                  "started together (a barrier), as the pipeline's joblib launcher trains seeds "
                  "(`hydra/launcher=joblib hydra.launcher.n_jobs=3 threads=1`); median of the repeats. "
                  "*total ÷ one trainer*: the replicas' summed samples/s against the one-process trainer "
                  f"path above at {rows[0]['threads']} threads.", "",
                  "| data | model | samples/s per replica | total samples/s | total ÷ one trainer |",
                  "| --- | --- | --- | ---: | ---: |"]
        for r in replicated:
            rep = r["replicas"]
            each = " · ".join(f"{v:,.0f}" for v in rep["samples_per_s"])
            lines.append(f"| {r['data']} | {r['model']} | {each} | {rep['total_samples_per_s']:,.0f} | "
                         f"{rep['total_vs_trainer']:.2f}× |")
    lines += [f"Skipped: {reason}" for reason in skipped]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=3,
                        help="trainer-path processes side by side, 1 thread each (0: skip)")
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--cases", nargs="*", default=[f"{d}:{m}" for d, m in CASES],
                        help="data:model pairs, each optionally :steps:repeats of its own (default: %(default)s)")
    args = parser.parse_args(argv)
    command = "python bench/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            data, model, *own = case.split(":")
            steps, repeats = (int(own[0]), int(own[1])) if own else (args.steps, args.repeats)
            if missing := missing_shared_file(data):
                skipped.append(f"{case}: no {missing}")
                continue
            rows.append(measure(data, model, steps, args.warmup, repeats, Path(tmp), args.replicas))
            print(case, {k: round(v) for k, v in rows[-1]["samples_per_s"].items()}, flush=True)
    write_report("throughput", {"command": command.strip(), "rows": rows, "skipped": skipped},
                 markdown(rows, command.strip(), skipped), args.out)
    return rows


if __name__ == "__main__":
    main()
