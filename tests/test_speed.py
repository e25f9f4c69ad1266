"""What the speed work changed must not change what is computed: epoch-level training metrics,
fused optimizers and the warm-up schedule; plus a smoke run of the throughput benchmark."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from archbench.tasks.optim import build_optimizer, build_scheduler
from archbench.train import build

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("batch_size", [100, 15])
def test_epoch_training_metrics_equal_the_whole_split(make_cfg, batch_size):
    """With frozen weights (a negligible lr, no dropout), the once-per-epoch train/loss and train/acc
    must equal the sample-weighted loss and accuracy over every training sample, ragged last
    batch included: nothing lost or double-counted by accumulating instead of logging per step.
    Batch 15 gives more batches than the hits' score buffer holds, so it is also emptied mid-epoch."""
    from archbench.tasks.epoch_metrics import SCORES_BUFFERED

    cfg = make_cfg("data=digits", "model=mlp", "model.net.dropout=0", "optimizer.lr=1e-30",
                   "scheduler=none", f"data.batch_size={batch_size}", "trainer.max_epochs=1")
    torch.manual_seed(0)
    _, _, datamodule, built = build(cfg)
    task = built.module
    x, y = datamodule.splits["train"].x, datamodule.splits["train"].y
    assert len(y) % batch_size, "the split should end in a partial batch for this test to mean something"
    assert batch_size == 100 or len(y) // batch_size > 2 * SCORES_BUFFERED
    with torch.no_grad():
        scores = task.net.eval()(x)
    expected_loss = F.cross_entropy(scores, y).item()
    expected_acc = (scores.argmax(-1) == y).float().mean().item()
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=datamodule)
    logged = trainer.callback_metrics
    assert logged["train/loss"].item() == pytest.approx(expected_loss, rel=1e-5)
    assert logged["train/acc"].item() == pytest.approx(expected_acc, abs=1e-6)


def test_a_loss_summed_as_a_number_is_the_tensor_sum_bit_for_bit():
    """``update_mean`` takes the float ``check_finite`` read (no tensor op per step): its epoch mean
    must be the bits the float32 tensor sum gives, ragged weights included, across a mid-epoch
    summing of the buffered numbers (more than NUMBERS_BUFFERED steps)."""
    from archbench.tasks.epoch_metrics import NUMBERS_BUFFERED, TrainEpochMetrics

    torch.manual_seed(0)
    as_tensor, as_number = TrainEpochMetrics("loss"), TrainEpochMetrics("loss")
    for _ in range(NUMBERS_BUFFERED + 500):
        loss, weight = torch.rand(()) * 3, int(torch.randint(1, 129, ()))
        as_tensor.update_mean("loss", loss, weight)
        as_number.update_mean("loss", loss.item(), weight)
    assert len(as_number._numbers["loss"]) == 500  # the first NUMBERS_BUFFERED already summed
    as_number._sum_numbers("loss")
    with pytest.raises(KeyError, match="known: loss"):
        as_number.update_mean("acc", 1.0, 3)
    (tensor_sum, tensor_weight), (number_sum, number_weight) = as_tensor._pending["loss"], as_number._pending["loss"]
    assert tensor_weight == number_weight
    assert (tensor_sum / tensor_weight).item() == float(number_sum / number_weight)


def test_lightning_hook_bookkeeping_skips_module_registration_only(make_cfg):
    """TaskModule's fast path sets ``_current_fx_name`` as a plain attribute; every other
    assignment still goes through nn.Module (submodules and parameters are registered)."""
    from archbench.tasks.module import TaskModule

    _, _, _, built = build(make_cfg("data=digits", "model=mlp"))
    task = built.module
    assert isinstance(task, TaskModule)
    task._current_fx_name = "training_step"
    assert task.__dict__["_current_fx_name"] == "training_step" and task._current_fx_name == "training_step"
    task.extra = torch.nn.Linear(2, 2)
    task.scale = torch.nn.Parameter(torch.ones(1))
    assert "extra" in task._modules and "scale" in task._parameters
    assert "extra.weight" in task.state_dict() and "scale" in dict(task.named_parameters())


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_deterministic_training_without_nan_fill_changes_no_bit(make_cfg, model):
    """DeterministicWithoutFill (in every run's callbacks) turns off torch's NaN fill of new tensors
    under deterministic mode: the same seeded training ends with bit-identical weights as with the
    fill on, and the global flag is restored afterwards."""
    import torch.utils.deterministic as deterministic

    from archbench.tasks.callbacks import DeterministicWithoutFill

    cfg = make_cfg("data=mnist1d", f"model={model}", "trainer.max_epochs=1", "data.batch_size=64")
    weights, initial = {}, None
    for fill in (True, False):
        torch.manual_seed(0)
        _, _, datamodule, built = build(cfg)
        initial = {k: v.clone() for k, v in built.module.state_dict().items()}
        callbacks = [] if fill else [DeterministicWithoutFill()]
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=0, logger=False,
                             deterministic=True, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=callbacks)
        seen: list[bool] = []
        built.module.on_train_batch_end = lambda *_, seen=seen: seen.append(
            deterministic.fill_uninitialized_memory)
        trainer.fit(built.module, datamodule=datamodule)
        assert seen == [fill] * 6  # the flag as each step saw it
        weights[fill] = {k: v.clone() for k, v in built.module.state_dict().items()}
    assert deterministic.fill_uninitialized_memory is True  # restored by teardown
    assert weights[True].keys() == weights[False].keys()
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])
    assert any(not torch.equal(initial[k], weights[False][k]) for k in initial)  # it did train



def test_the_nan_fill_comes_back_when_a_training_raises(make_cfg):
    """Lightning skips callbacks' ``teardown`` on an exception: DeterministicWithoutFill restores the
    flag in ``on_exception`` as well, so a failed run (a NaN loss) leaves later ones as they were."""
    import torch.utils.deterministic as deterministic

    from archbench.tasks.callbacks import DeterministicWithoutFill

    cfg = make_cfg("data=digits", "model=mlp", "trainer.max_epochs=1")
    _, _, datamodule, built = build(cfg)

    def failing_step(batch, batch_idx):
        assert deterministic.fill_uninitialized_memory is False  # the callback's setup ran
        raise FloatingPointError("loss is nan")

    built.module.training_step = failing_step
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, deterministic=True,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[DeterministicWithoutFill()])
    with pytest.raises(FloatingPointError):
        trainer.fit(built.module, datamodule=datamodule)
    assert deterministic.fill_uninitialized_memory is True

@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_fused_optimizer_takes_the_same_steps(name):
    torch.manual_seed(0)
    fused_net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    plain_net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    plain_net.load_state_dict(fused_net.state_dict())
    cfg = {"name": name, "lr": 1e-2, "weight_decay": 1e-3}
    fused = build_optimizer(fused_net.parameters(), cfg)
    plain = build_optimizer(plain_net.parameters(), {**cfg, "fused": False})
    assert fused.defaults["fused"] and not plain.defaults.get("fused")
    for _ in range(50):
        x, y = torch.randn(16, 20), torch.randint(0, 4, (16,))
        for net, optimizer in ((fused_net, fused), (plain_net, plain)):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    for a, b in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(fused_net[0].weight, torch.nn.Linear(20, 32).weight)


@pytest.mark.slow
def test_a_compiled_update_takes_the_eager_steps_and_follows_the_schedule():
    """optimizer.compile: the same update rule as torch's eager Adadelta (other rounding only), and a
    scheduler's new learning rate reaches the compiled update (a tensor filled in place)."""
    import torch._dynamo.utils

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    cfg = {"name": "adadelta", "lr": 1.0, "weight_decay": 1e-3, "rho": 0.95}
    optimizers = [build_optimizer(nets[0].parameters(), cfg), build_optimizer(nets[1].parameters(), {**cfg, "compile": True})]
    schedules = [build_scheduler(o, {"name": "step", "step_size": 10, "gamma": 0.1}, 30, 30)["scheduler"] for o in optimizers]
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for _ in range(30):
        x, y = torch.randn(16, 20), torch.randint(0, 4, (16,))
        for net, optimizer, schedule in zip(nets, optimizers, schedules, strict=True):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
            schedule.step()
    assert float(optimizers[1].param_groups[0]["lr"]) == pytest.approx(1e-3)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 1  # the lr changes recompiled nothing
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    frozen = copy.deepcopy(nets[1])  # at lr 0 the compiled update moves nothing: it reads the scheduled lr
    optimizers[1].param_groups[0]["lr"].fill_(0.0)
    optimizers[1].zero_grad()
    F.cross_entropy(nets[1](torch.randn(16, 20)), torch.randint(0, 4, (16,))).backward()
    optimizers[1].step()
    assert all(torch.equal(a, b) for a, b in zip(frozen.parameters(), nets[1].parameters(), strict=True))


@pytest.mark.slow
def test_each_new_optimizer_compiles_its_update_past_the_recompile_limit():
    """A multirun's jobs or a sweep's trials build optimizers one after another in one process:
    each gets its update compiled, not dynamo's eager fallback once the limit is reached."""
    import torch._dynamo

    counters = torch._dynamo.utils.counters["stats"]
    with torch._dynamo.config.patch(recompile_limit=1):
        for _ in range(2):
            param = torch.nn.Parameter(torch.ones(3))
            optimizer = build_optimizer([param], {"name": "rmsprop", "lr": 0.1, "weight_decay": 0.0, "compile": True})
            param.grad = torch.ones(3)
            graphs = counters["unique_graphs"]
            optimizer.step()
            assert counters["unique_graphs"] == graphs + 1


@pytest.mark.slow
def test_an_eager_runs_checkpoint_continues_with_a_compiled_update_that_follows_the_schedule():
    """optimizer.compile is not fingerprinted, so an eager run's checkpoint (its lr a float) may be
    continued compiled: the loaded lr goes back into a tensor, and the steps match the eager ones."""
    nets, optimizers, schedules = [], [], []
    for compiled in (False, True):
        torch.manual_seed(0)
        nets.append(torch.nn.Linear(4, 2))
        optimizers.append(build_optimizer(nets[-1].parameters(), {"name": "rmsprop", "lr": 0.1, "weight_decay": 0.0,
                                                                  "compile": compiled}))
        schedules.append(build_scheduler(optimizers[-1], {"name": "step", "step_size": 1, "gamma": 0.5}, 4, 4)["scheduler"])
    x = torch.randn(8, 4)
    nets[0](x).pow(2).mean().backward()
    optimizers[0].step()
    schedules[0].step()
    nets[1].load_state_dict(nets[0].state_dict())
    # a copy, as a checkpoint file is: load_state_dict keeps same-device tensors, so would share them
    optimizers[1].load_state_dict(copy.deepcopy(optimizers[0].state_dict()))
    schedules[1].load_state_dict(schedules[0].state_dict())
    assert isinstance(optimizers[1].param_groups[0]["lr"], torch.Tensor)
    for _ in range(3):
        for net, optimizer, schedule in zip(nets, optimizers, schedules, strict=True):
            optimizer.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer.step()
            schedule.step()
    assert float(optimizers[1].param_groups[0]["lr"]) == pytest.approx(0.1 * 0.5**4)
    assert torch.allclose(nets[0].weight, nets[1].weight, atol=1e-6)


def test_a_compiled_update_is_refused_where_it_cannot_work(make_cfg):
    import torch._inductor.config

    from archbench.config import validate
    from archbench.errors import ConfigError

    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ConfigError, match="optimizer.compile must be true or false, got 'yes'"):
        build_optimizer(params, {"name": "adadelta", "lr": 1.0, "weight_decay": 0.0, "compile": "yes"})
    with pytest.raises(ConfigError, match="onecycle changes the momentum at every step"):
        validate(make_cfg("data=digits", "model=mlp", "scheduler=onecycle", "+optimizer.compile=true"))
    # torch's own patch: pytest's monkeypatch deletes a config module's attribute on undo
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",)}), pytest.raises(
            ConfigError, match="needs a C\\+\\+ compiler for CPU training .*install g\\+\\+ or set CXX"):
        build_optimizer(params, {"name": "adadelta", "lr": 1.0, "weight_decay": 0.0, "compile": True})
    assert torch._inductor.config.cpp.cxx != ("/nonexistent/c++",)


def test_warmup_cosine_rises_then_decays_to_min_lr():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], {"name": "adamw", "lr": 1e-3,
                                                                       "weight_decay": 0.1})
    schedule = build_scheduler(optimizer, {"name": "warmup_cosine", "warmup_steps": 10, "min_lr": 1e-4},
                               max_epochs=1, total_steps=100)
    assert schedule["interval"] == "step"
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule["scheduler"].step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[10] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(1e-4, rel=1e-2)


@pytest.mark.slow
def test_throughput_benchmark_runs_and_reports(tmp_path, bench_module):
    """A smoke run (no timing asserted): every path trains and the report has its row."""
    throughput = bench_module("throughput")

    # the case's own 80 steps (not --steps): past mnist1d's first epoch (63 batches), so an epoch-end
    # hand-over is timed
    rows = throughput.main(["--steps", "30", "--warmup", "5", "--repeats", "1", "--cases", "mnist1d:mlp:80:1",
                            "--replicas", "2", "--out", str(tmp_path)])
    assert [(r["data"], r["model"], r["steps"]) for r in rows] == [("mnist1d", "mlp", 80)]
    assert all(rate > 0 for rate in rows[0]["samples_per_s"].values())
    saved = json.loads((tmp_path / "throughput.json").read_text())
    assert set(saved["rows"][0]["samples_per_s"]) == {"trainer", "loader", "tensors", "floor", "tensors_own"}
    replicas = saved["rows"][0]["replicas"]
    assert replicas["count"] == 2 and len(replicas["samples_per_s"]) == 2
    assert all(rate > 0 for rate in replicas["samples_per_s"])
    assert replicas["total_samples_per_s"] == pytest.approx(sum(replicas["samples_per_s"]))
    assert saved["rows"][0]["step"] in ("small", "large") and len(saved["rows"][0]["targets"]) == 2  # by timing
    report = (tmp_path / "throughput.md").read_text()
    assert "| mnist1d | mlp | 1×40 | 64 |" in report and "## Replicas path: 2 trainings" in report
    own = saved["rows"][0]["own_cost"]
    assert 0 < own["epoch_end_log_share"] < own["epoch_end_share"] < 1 and "## Where archbench's own cost goes" in report
    for path in ("trainer", "floor"):  # training_step timed over the clock's steps only
        [inside], [clocked] = saved["rows"][0]["seconds_in_training_step"][path], saved["rows"][0]["seconds"][path]
        assert 0 < inside < clocked
    assert "inside `training_step`" in report



@pytest.mark.slow
def test_memory_format_benchmark_times_both_layouts(tmp_path, bench_module):
    """A smoke run (no timing asserted): both layouts train on the Trainer path, and the gap between
    their logits and gradients is rounding, not a different function."""
    memory_format = bench_module("memory_format")

    [row] = memory_format.main(["--steps", "12", "--warmup", "2", "--repeats", "1", "--threads", "1",
                                "--cases", "digits:cnn", "--out", str(tmp_path)])
    assert row["threads"] == 1 and set(row["samples_per_s"]) == {"channels_last", "default"}
    assert all(rate > 0 for rate in row["samples_per_s"].values())
    assert row["relative_gap"]["logits"] < 1e-4 and row["relative_gap"]["gradients"] < 1e-4
    assert "| digits | cnn | 1×8×8 | 64 | 1 |" in (tmp_path / "memory_format.md").read_text()

@pytest.mark.slow
def test_optimizer_step_benchmark_times_eager_and_compiled_updates(tmp_path, bench_module):
    """A smoke run (no timing asserted): every update variant and both trainer paths run, and the
    compiled update lands where the eager one does, give or take rounding."""
    optimizer_step = bench_module("optimizer_step")

    [row] = optimizer_step.main(["--steps", "12", "--warmup", "4", "--repeats", "1", "--threads", "1",
                                 "--cases", "digits:mlp:adadelta", "--out", str(tmp_path)])
    assert row["optimizer"] == "adadelta" and set(row["update_ms"]) == {"default", "foreach", "compiled"}
    assert all(ms > 0 for ms in row["update_ms"].values()) and all(r > 0 for r in row["samples_per_s"].values())
    assert 0 <= row["weight_gap"] < 1e-5
    assert "| digits | mlp | adadelta |" in (tmp_path / "optimizer_step.md").read_text()


def test_cold_repro_time_splits_into_setup_and_stage_kinds(bench_module):
    """bench/overheads.py --cold: each stage runs from its "Running stage" line to the next, the
    last to the end; what comes before the first stage is setup; the parts add up to the total."""
    overheads = bench_module("overheads")

    lines = [(0.5, "python3 -m venv .venv"), (70.0, "Running stage 'prepare@digits':"),
             (72.0, "> archbench-prepare digits"), (73.0, "Running stage 'classify@digits-mlp':"),
             (90.0, "Running stage 'classify@digits-cnn':"), (120.0, "Running stage 'compare':"),
             (130.0, "Updating lock file 'dvc.lock'")]
    spent = overheads.stage_seconds(lines, total=135.0)
    assert spent == {"setup": 70.0, "prepare": 3.0, "classify": 47.0, "compare": 15.0}
    assert sum(spent.values()) == pytest.approx(135.0)


def test_published_reads_seed_42_from_a_pipeline_summary_without_retraining(tmp_path, monkeypatch, bench_module):
    """bench/published.py: a pair whose pipeline run folder is not checked out (a DVC out) is read
    from seed 42 of the summary the pipeline commits, with its recipe's budget."""
    published = bench_module("published")

    summary = tmp_path / "results" / "text" / "train" / "sst2-cnn.json"
    summary.parent.mkdir(parents=True)
    seeds = {"42": {"test/acc": 0.8, "epochs": 5.0, "train_seconds": 12.0, "parameters": 7.0},
             "43": {"test/acc": 0.7, "epochs": 4.0, "train_seconds": 11.0, "parameters": 7.0}}
    summary.write_text(json.dumps({"seeds": seeds}))
    monkeypatch.setattr(published, "ROOT", tmp_path)
    entry = next(e for e in published.ENTRIES if e.key == "sst2-cnn")
    assert published.run_dir(entry)[1] == "bench/published.py"
    metrics, cfg, origin = published.pipeline_summary(entry)
    row = published.row(entry, metrics, cfg, origin)
    assert row["ours"] == 0.8 and row["seed"] == 42 and row["train_seconds"] == 12.0
    assert row["budget"] == f"5 epochs × batch {cfg['data']['batch_size']}"
    assert origin == "dvc pipeline summary, results/text/train/sst2-cnn.json (seed 42)"
    missing = next(e for e in published.ENTRIES if e.key == "mnist-vae")
    assert published.pipeline_summary(missing) is None


def test_start_up_defers_collection_and_training_restores_it():
    """archbench.gc_policy: a console script collects rarely while it loads, a training loop
    starts with start-up's objects frozen and the thresholds it had; without the deferral
    (tests, notebooks, a sweep's workers) nothing changes."""
    import gc

    from archbench import gc_policy

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc_policy.settle()
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen  # never deferred: no-op
    try:
        gc_policy.defer_collection()
        assert gc.get_threshold() == gc_policy.STARTUP_THRESHOLDS
        gc_policy.settle()
        assert gc.get_threshold() == before and gc.get_freeze_count() > frozen
    finally:
        gc_policy.restore(before)


def test_console_scripts_defer_collection_before_importing_their_program(tmp_path):
    """The deferral runs before the program's module (and so torch, Lightning, MLflow) is imported;
    a training through the console script then runs its loop at the default thresholds."""
    import subprocess

    probe = tmp_path / "probe_program.py"
    probe.write_text("import gc, sys\nAT_IMPORT = gc.get_threshold()\n"
                     "def main():\n    print(AT_IMPORT, sys.modules.get('torch') is None)\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from archbench.cli import entry; "
            "entry.PROGRAMS['probe'] = 'probe_program'; entry._script('probe')()")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    from archbench.gc_policy import STARTUP_THRESHOLDS

    assert result.stdout.strip() == f"{STARTUP_THRESHOLDS} True"


class ThresholdProbe(pl.Callback):
    """Records the collector's thresholds at each training step (class-level: built from config)."""

    seen: list[tuple[int, int, int]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        import gc

        ThresholdProbe.seen.append(gc.get_threshold())


def test_a_deferred_start_up_trains_at_the_default_thresholds(make_cfg):
    import gc

    from archbench import gc_policy
    from archbench.train import train

    before = gc.get_threshold()
    cfg = make_cfg("data=digits", "model=logistic", "trainer.max_epochs=1", "logger.log_model=false",
                   "callbacks.progress_bar=none")
    cfg.callbacks.extra = {"probe": {"_target_": f"{__name__}.ThresholdProbe"}}
    ThresholdProbe.seen.clear()
    try:
        gc_policy.defer_collection()
        train(cfg)
        assert ThresholdProbe.seen and set(ThresholdProbe.seen) == {before}
        assert gc.get_freeze_count() > 0
    finally:
        gc_policy.restore(before)


def _batch_counting_logger(tmp_path, monkeypatch, flush_seconds: float):
    """A BatchingMLFlowLogger on a new run of a sqlite store, and the list its log_batch calls fill."""
    import mlflow

    from archbench.tracking.logger import BatchingMLFlowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("batching"))
    calls: list[int] = []
    original = mlflow.MlflowClient.log_batch

    def counted(self, run_id, metrics=(), **kwargs):
        calls.append(len(metrics))
        return original(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", counted)
    logger = BatchingMLFlowLogger(tracking_uri=uri, run_id=run.info.run_id, flush_seconds=flush_seconds)
    return logger, client, run.info.run_id, calls


def test_batched_metrics_reach_mlflow_in_one_call_when_the_logger_finalizes(tmp_path, monkeypatch):
    logger, client, run_id, calls = _batch_counting_logger(tmp_path, monkeypatch, flush_seconds=3600)
    for step in range(3):
        logger.log_metrics({"val/acc": 0.5 + step / 10}, step=step)
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "lr-Adam": 0.001}, step=step)
    assert calls == [] and client.get_metric_history(run_id, "val/acc") == []  # kept, not sent
    logger.finalize("success")
    assert calls == [9]
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val/acc"))
    assert history == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [1.0, 0.5, 1 / 3]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_flush_seconds_zero_sends_every_call_at_once(tmp_path, monkeypatch):
    logger, client, run_id, calls = _batch_counting_logger(tmp_path, monkeypatch, flush_seconds=0)
    logger.log_metrics({"val/acc": 0.5}, step=0)
    assert calls == [1] and [m.value for m in client.get_metric_history(run_id, "val/acc")] == [0.5]


class FailAtSecondEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("injected failure")


def test_a_failing_training_still_sends_the_metrics_it_logged(make_cfg):
    """Lightning finalizes its loggers on any exception: the epochs before the failure reach
    MLflow even when they were kept for a later batch."""
    import mlflow

    from archbench.train import train

    cfg = make_cfg("data=digits", "model=logistic", "trainer.max_epochs=3", "logger.flush_seconds=3600")
    cfg.callbacks.extra = {"fail": {"_target_": f"{__name__}.FailAtSecondEpoch"}}
    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg)
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.info.status == "FAILED"
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2, history  # the second epoch validates before its train-epoch end raises
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 1  # the first epoch's


def test_channels_last_puts_conv_weights_in_nhwc_and_keeps_the_function():
    """trainer.channels_last: a net with 2-D convolutions gets channels-last weights, the same
    state_dict keys and the same outputs to rounding, and its checkpoints load into either layout;
    a net without them is left as it is."""
    import copy

    from archbench.nets.cnn import ConvNet
    from archbench.nets.common import use_channels_last
    from archbench.nets.mlp import MLP

    torch.manual_seed(0)
    net = ConvNet((3, 16, 16), 10)
    default = copy.deepcopy(net)
    assert use_channels_last(net)
    conv = net.features[3]  # 64 × 32 × 3 × 3: the two layouts differ
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert list(net.state_dict()) == list(default.state_dict())
    x = torch.randn(8, 3, 16, 16)
    torch.testing.assert_close(net(x), default(x), rtol=1e-5, atol=1e-5)
    assert net(x).shape == (8, 10)
    reloaded = ConvNet((3, 16, 16), 10)
    reloaded.load_state_dict(net.state_dict())  # a channels-last checkpoint into the default layout
    torch.testing.assert_close(reloaded(x), default(x), rtol=1e-5, atol=1e-5)

    mlp = MLP((20,), 3)
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    assert not use_channels_last(mlp)
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())


@pytest.mark.parametrize(("value", "channels_last"), [("auto", True), ("true", True), ("false", False)])
def test_training_applies_the_channels_last_switch(make_cfg, value, channels_last):
    """The run's net is in the layout the switch names (auto: it holds a Conv2d), and it trains."""
    from archbench.train import apply_net_switches

    cfg = make_cfg("data=digits", "model=cnn", f"trainer.channels_last={value}")
    _, _, datamodule, built = build(cfg)
    apply_net_switches(cfg, built.nets)
    weight = built.module.net.features[3].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    before = weight.detach().clone()
    trainer.fit(built.module, datamodule=datamodule)
    assert not torch.equal(before, weight)  # it trained, in place
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last


def test_an_unknown_channels_last_value_is_refused_with_the_choices(make_cfg):
    from archbench.config import validate
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown trainer.channels_last 'sometimes'; valid: auto, true, false"):
        validate(make_cfg("trainer.channels_last=sometimes"))


def test_a_channels_last_net_logs_as_pt2_and_loads_with_the_same_outputs(tmp_path):
    """MLflow's default pt2 format keeps channels-last conv weights whole: the loaded model returns
    the same bits as the net, and torch's packager warning about them is not shown to the user."""
    import warnings

    import mlflow

    from archbench.nets.cnn import ConvNet
    from archbench.nets.common import use_channels_last
    from archbench.tracking.mlflow_run import log_torch_model

    torch.manual_seed(0)
    net = ConvNet((3, 16, 16), 10)
    assert use_channels_last(net)
    x = torch.randn(4, 3, 16, 16)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("pt2")  # not the process's active one: another test's store
    with mlflow.start_run(experiment_id=experiment), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uri = log_torch_model(net, x[:2])
    assert not [w for w in caught if "No complete tensor" in str(w.message)]
    loaded = mlflow.pytorch.load_model(uri)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))
