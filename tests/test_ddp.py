"""Real multi-process DDP: 2 CPU processes with gloo (``trainer=ddp_cpu``, spawn-launched).
(Training against a real MLflow tracking server: tests/test_postgres.py; torchrun: tests/test_multinode.py.)"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import call_cli

from archbench.train import build, train

pytestmark = pytest.mark.slow


def _runs(tracking_uri: str, output_dir) -> list:
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("archbench")
    return [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("output_dir") == str(output_dir)]


def test_ddp_cpu_training_matches_one_process_with_one_run_and_one_checkpoint(make_cfg, tmp_path):
    # a budget that converges: digits mlp, 8 epochs, measured 95.6 / 96.1 % in one process and
    # 95.6 / 96.4 % with DDP for seeds 0 / 1 (the spawned processes' start-up is most of the time)
    common = ("data=digits", "model=mlp", "trainer.max_epochs=8", "data.batch_size=64",
              "callbacks.early_stopping.enabled=false")
    single = train(make_cfg(*common, output="single"))
    ddp = train(make_cfg(*common, "trainer=ddp_cpu", output="ddp"))

    assert abs(ddp["test/acc"] - single["test/acc"]) <= 0.02, (ddp, single)
    assert ddp["epochs"] == 8 and ddp["val/acc_then_loss_best"] == ddp["val/acc_then_loss_best"]  # not NaN

    tracking_uri = make_cfg().logger.tracking_uri
    [run] = _runs(tracking_uri, tmp_path / "ddp")  # exactly one run, from rank 0
    assert run.info.status == "FINISHED"
    history = mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 8  # one point per epoch, not one per process
    assert run.data.params["trainer.strategy"] == "ddp_spawn" and run.data.params["trainer.devices"] == "2"
    checkpoints = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").glob("*.ckpt"))
    assert checkpoints == ["best.ckpt", "last.ckpt"]
    assert (tmp_path / "ddp" / "confusion.png").is_file()  # written by rank 0 in its process
    assert len((tmp_path / "ddp" / "curves.csv").read_text().splitlines()) == 9


def test_ddp_evaluation_of_fixed_weights_equals_one_process(make_cfg):
    """Unpadded evaluation shards: every sample counted exactly once (153 validation samples)."""
    cfg = make_cfg("data=digits", "model=mlp", "data.test_fraction=0.15", "data.eval_batch_size=32")
    torch.manual_seed(0)
    _, _, datamodule, built = build(cfg)
    assert datamodule.meta.splits["val"] % 2 == 1  # an odd split: a padding sampler would count one twice
    task = built.module
    state = {k: v.clone() for k, v in task.state_dict().items()}

    def evaluate(**strategy) -> dict[str, float]:
        task.load_state_dict(state)
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, **strategy)
        [val] = trainer.validate(task, datamodule=datamodule, verbose=False)
        [test] = trainer.test(task, datamodule=datamodule, verbose=False)
        return {**val, **test}

    one = evaluate(devices=1)
    two = evaluate(devices=2, strategy="ddp_spawn")
    for key in ("val/acc", "test/acc", "val/f1", "test/f1"):
        assert two[key] == one[key], key
    for key in ("val/loss", "test/loss"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key


def test_ddp_training_metrics_are_the_whole_split_means(make_cfg):
    """Each rank logs its shard's epoch means once, with its sample count as the batch size:
    Lightning's sync must turn them into the means over every training sample, as one process
    reports them (frozen weights: an lr of 1e-30, no dropout). Unsynced, rank 0 reports its half."""
    cfg = make_cfg("data=digits", "model=mlp", "model.net.dropout=0", "optimizer.lr=1e-30", "scheduler=none",
                   "data.test_fraction=0.15", "data.batch_size=30", "trainer.max_epochs=1")
    torch.manual_seed(0)
    _, _, datamodule, built = build(cfg)
    task = built.module
    x, y = datamodule.splits["train"].x, datamodule.splits["train"].y
    assert len(y) % 2 == 0 and len(y) // 2 % 15, "no padded duplicate; each shard ends in a partial batch"
    with torch.no_grad():
        scores = task.net.eval()(x)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(task, datamodule=datamodule)
    logged = trainer.callback_metrics
    assert logged["train/loss"].item() == pytest.approx(F.cross_entropy(scores, y).item(), rel=1e-5)
    assert logged["train/acc"].item() == pytest.approx((scores.argmax(-1) == y).float().mean().item(), abs=1e-6)


def test_an_optuna_sweep_whose_trials_train_with_ddp_cpu(tmp_path, capfd):
    """Hydra multirun + DDP: each trial spawns its 2 processes inside trainer.fit (no re-executed
    command line), gets its own output directory, and trains with the trial's values."""
    sweep_dir = tmp_path / "sweep"
    db = tmp_path / "mlflow.db"
    result = call_cli(
        "archbench-train", "-m", "hparams_search=lr_wd", "data=digits", "model=logistic",
        "trainer=ddp_cpu", "trainer.max_epochs=2", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.name=none", f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"paths.data_dir={tmp_path / 'data'}", f"paths.output_root={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={sweep_dir}", env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert result.returncode == 0, result.stderr[-3000:]
    trials = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in trials] == ["0_logistic-digits-t000", "1_logistic-digits-t001"]
    assert all((p / "metrics.json").is_file() and (p / "checkpoints" / "best.ckpt").is_file() for p in trials)
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("archbench").experiment_id])
    children = [r for r in runs if r.data.tags.get("optuna.trial_number")]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.params["trainer.strategy"] == "ddp_spawn" for r in children)
    lrs = {r.data.params["optimizer.lr"] for r in children}
    assert len(lrs) == 2
    for run in children:  # the value the rank-0 process trained with is the trial's value
        config = (Path(run.data.tags["output_dir"]) / "config.yaml").read_text()
        assert f"lr: {float(run.data.params['optimizer.lr'])}" in config
    # the spawned ranks keep the console as quiet as one process (archbench.tasks.callbacks.QuietProcess)
    ranks_said = capfd.readouterr().err
    assert "LeafSpec" not in ranks_said and "sync_dist" not in ranks_said


class SaveRankWeights(pl.Callback):
    """Each rank writes its net's weights and whether every 4-D weight is still channels-last."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module) -> None:
        weights = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        nhwc = all(v.is_contiguous(memory_format=torch.channels_last) for v in pl_module.net.parameters() if v.dim() == 4)
        torch.save({"weights": weights, "channels_last": nhwc}, self.out_dir / f"rank{trainer.global_rank}.pt")


def test_ddp_trains_channels_last_conv_weights_in_step_on_both_ranks(make_cfg, tmp_path, capfd):
    """trainer.channels_last under DDP: gloo's gradient buckets take the NHWC gradients without
    torch's stride-mismatch warning, both ranks keep channels-last weights, and after training they
    hold the same weights (the all-reduce averaged every gradient)."""
    from archbench.train import apply_net_switches

    cfg = make_cfg("data=digits", "model=cnn", "data.batch_size=32")
    torch.manual_seed(0)
    _, _, datamodule, built = build(cfg)
    apply_net_switches(cfg, built.nets)
    before = {k: v.clone() for k, v in built.module.net.state_dict().items()}
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, limit_train_batches=4,
                         limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[SaveRankWeights(tmp_path)])
    trainer.fit(built.module, datamodule=datamodule)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(rank["channels_last"] for rank in ranks)
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key]), key
    assert any(not torch.equal(before[k], v) for k, v in ranks[0]["weights"].items())  # it trained
    assert "strides do not match" not in capfd.readouterr().err
