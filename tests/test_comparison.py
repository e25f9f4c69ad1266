"""The comparison's statistics against hand-computed cases, seed replicates, cost and calibration."""

import json

import mlflow
import numpy as np
import pytest
import torch
from conftest import call_cli, run_cli
from torch import nn

from archbench.nets.cost import flops_per_example
from archbench.replicas import shared_seed_folders, summarise, summary_lines, swept_seeds
from archbench.report import stats
from archbench.report.figures import pareto_front


def test_mcnemar_exact_on_a_known_table():
    # discordant pairs: A right where B is wrong once, B right where A is wrong 9 times
    a = np.array([1] * 50 + [1] + [0] * 9 + [0] * 5, bool)
    b = np.array([1] * 50 + [0] + [1] * 9 + [0] * 5, bool)
    # exact two-sided: 2·P(X ≤ 1), X ~ Binomial(10, 1/2) = 2·11/1024
    assert stats.mcnemar_exact(a, b) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(a, a) == 1.0  # no discordant pairs: nothing to tell apart


def test_holm_correction_by_hand():
    # sorted 0.01, 0.03, 0.04 → ×3, ×2, ×1 = 0.03, 0.06, 0.04 → monotone: 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_paired_bootstrap_covers_the_true_difference_and_finds_no_difference_in_a_tie():
    rng = np.random.default_rng(1)
    n = 4000
    better = rng.random((3, n)) < 0.80  # three seeds, true accuracy 0.80
    worse = rng.random((3, n)) < 0.75  # true accuracy 0.75: true difference +0.05
    found = stats.paired_bootstrap(better, worse, n_boot=2000)
    assert found.low < 0.05 < found.high and found.p_value < 0.01
    tie = stats.paired_bootstrap(better, better.copy(), n_boot=2000)
    assert tie.mean == 0 and tie.low <= 0 <= tie.high and tie.p_value == 1.0
    low, high = stats.mean_ci(better, n_boot=500)
    assert low < 0.80 < high and high - low < 0.05


def test_ece_of_a_calibrated_and_of_an_overconfident_predictor():
    rng = np.random.default_rng(0)
    n = 20000
    confidence = rng.uniform(0.5, 1.0, n)
    targets = rng.integers(0, 2, n)
    right = rng.random(n) < confidence  # right exactly as often as it claims
    predicted = np.where(right, targets, 1 - targets)
    probs = np.zeros((n, 2))
    probs[np.arange(n), predicted] = confidence
    probs[np.arange(n), 1 - predicted] = 1 - confidence
    assert stats.expected_calibration_error(probs, targets) < 0.02
    overconfident = np.where(rng.random(n) < 0.6, targets, 1 - targets)  # 60 % right, claims 99 %
    probs = np.full((n, 2), 0.01)
    probs[np.arange(n), overconfident] = 0.99
    assert stats.expected_calibration_error(probs, targets) == pytest.approx(0.39, abs=0.02)
    assert stats.brier_score(np.eye(2)[targets], targets) == 0.0
    assert stats.negative_log_likelihood(np.eye(2)[targets], targets) == pytest.approx(0.0, abs=1e-9)


def test_flops_of_known_layers():
    assert flops_per_example(nn.Linear(64, 10), torch.zeros(4, 64)) == 2 * 64 * 10
    conv = nn.Conv1d(1, 8, kernel_size=3, padding=1)  # 8 channels × 40 positions × 3 taps, ×2
    assert flops_per_example(conv, torch.zeros(2, 1, 40)) == 2 * 8 * 40 * 3
    # recurrent cells: gates · 2 · (input + hidden) · hidden per step, 40 steps (fused or not)
    for cell, gates in ((nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)):
        layer = cell(8, 16, batch_first=True)
        assert flops_per_example(layer, torch.zeros(2, 40, 8)) == gates * 2 * (8 + 16) * 16 * 40, cell
    deep = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)  # layer 2 reads 2×16
    assert flops_per_example(deep, torch.zeros(2, 40, 8)) == 4 * 2 * 16 * 2 * ((8 + 16) + (32 + 16)) * 40


def test_pareto_front_keeps_what_nothing_beats_on_both_axes():
    # (cost, accuracy): the second is dominated by the first, the fourth by the third
    points = [(1.0, 90.0), (2.0, 85.0), (3.0, 95.0), (4.0, 94.0), (10.0, 97.0)]
    assert pareto_front(points) == [0, 2, 4]


def test_paired_rmse_bootstrap_resolves_a_real_gap_and_not_a_tie():
    from archbench.report.stats import paired_rmse_bootstrap

    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (3, 500)) ** 2
    doubled = paired_rmse_bootstrap(4 * base, base)  # errors twice as large: RMSE twice as large
    assert doubled.mean == pytest.approx(np.sqrt(base.mean()), rel=1e-9) and doubled.low > 0 and doubled.p_value < 0.01
    same = paired_rmse_bootstrap(base, base)
    assert same.mean == 0 and same.low == same.high == 0 and same.p_value == 1.0


def test_swept_seeds_and_summary():
    assert swept_seeds(["data=digits", "seed=42,43,44"]) == [42, 43, 44]
    assert swept_seeds(["seed=range(1,4)", "model=mlp"]) == [1, 2, 3]
    assert shared_seed_folders(["data=digits", "seed=42,43,44"]) is None
    assert shared_seed_folders(["data=digits"]) is None  # one job
    assert shared_seed_folders(["seed=1,1"]).startswith("seed repeats a value (1, 1)")
    assert "and optimizer.lr and model are swept too" in shared_seed_folders(["optimizer.lr=0.1,0.2", "model=a,b", "seed=1"])
    summary = summarise({42: {"test/acc": 0.9}, 43: {"test/acc": 0.8}})
    assert summary["n"] == 2 and summary["mean"]["test/acc"] == pytest.approx(0.85)
    assert summary["std"]["test/acc"] == pytest.approx(0.0707107, rel=1e-5)


def test_replicates_end_with_their_summary_on_the_console(tmp_path):
    """Before, a replicas multirun printed Hydra's launch lines and no result."""
    sweep = tmp_path / "sweep"
    (sweep / "seed1").mkdir(parents=True)
    (sweep / "seed1" / "run.json").write_text('{"model": "mlp", "data": "digits"}')
    found = {1: {"test/acc": 0.9, "val/acc_best": 0.8, "epochs": 3}, 2: {"test/acc": 0.8, "val/acc_best": 0.9}}
    assert summary_lines(sweep, 3, found).splitlines() == [
        "archbench: mlp on digits, 2 of 3 seeds finished (1, 2)", f"  summary        {tmp_path / 'sweep.json'}",
        "  test           acc 0.85 ± 0.071", "  best val       acc 0.85 ± 0.071"]
    assert summary_lines(sweep, 2, {}).splitlines()[0] == "archbench: no run, 0 of 2 seeds finished (none)"


def test_seeds_change_initial_weights_and_the_same_seed_repeats_them(make_cfg):
    from archbench.train import build

    def first_weights(seed: int) -> torch.Tensor:
        import pytorch_lightning as pl

        pl.seed_everything(seed, verbose=False)
        *_, built = build(make_cfg("data=digits", "model=mlp", f"seed={seed}"))
        return next(built.module.net.parameters()).detach().clone()

    assert torch.equal(first_weights(42), first_weights(42))
    assert not torch.equal(first_weights(42), first_weights(43))


@pytest.mark.slow
def test_replicas_train_each_seed_once_and_one_more_seed_trains_only_that_seed(tmp_path):
    """`archbench-train -m replicas=seeds seed=...`: one run per seed (own folder, MLflow run tagged
    pair and seed, predictions), a summary beside the folder; one more seed trains only that seed;
    a dropped seed loses its folder."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = tmp_path / "digits-logistic"

    def replicas(seeds: str):
        result = call_cli("archbench-train", "-m", "replicas=seeds", "data=digits", "model=logistic",
                         f"seed={seeds}", "trainer.max_epochs=2", "logger.log_model=false",
                         f"paths.data_dir={tmp_path / 'prepared'}", f"hydra.sweep.dir={sweep}",
                         env={"MLFLOW_TRACKING_URI": uri})
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"archbench: logistic on digits, {len(seeds.split(','))} seeds finished ({seeds.replace(',', ', ')})" in result.stdout
        return json.loads((tmp_path / "digits-logistic.json").read_text())

    first = replicas("42,43")
    assert first["n"] == 2 and first["seeds"]["42"]["test/acc"] != first["seeds"]["43"]["test/acc"]
    ids = {s: json.loads((sweep / f"seed{s}" / "run.json").read_text())["run_id"] for s in (42, 43)}
    assert (sweep / "seed42" / "test_predictions.npz").is_file()
    second = replicas("42,43,44")
    assert second["n"] == 3 and second["seeds"]["42"] == first["seeds"]["42"]
    assert {s: json.loads((sweep / f"seed{s}" / "run.json").read_text())["run_id"] for s in (42, 43)} == ids
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["archbench"])
    assert sorted(runs["tags.seed"]) == ["42", "43", "44"]  # seeds 42 and 43 did not train again
    assert set(runs["tags.pair"]) == {"digits-logistic"}
    assert replicas("43,44")["n"] == 2 and not (sweep / "seed42").exists()


def test_training_subsets_are_seeded_nested_and_leave_val_and_test_alone(make_cfg):
    from archbench.data.datamodule import training_subset
    from archbench.train import build

    tenth, half = training_subset(1000, 0.1, 42), training_subset(1000, 0.5, 42)
    assert len(tenth) == 100 and set(tenth.tolist()) <= set(half.tolist())  # nested
    assert torch.equal(tenth, training_subset(1000, 0.1, 42))
    assert not torch.equal(tenth, training_subset(1000, 0.1, 43))
    full = build(make_cfg("data=digits", "model=logistic"))[2]
    part = build(make_cfg("data=digits", "model=logistic", "data.train_fraction=0.25"))[2]
    assert len(part.splits["train"]) == round(0.25 * len(full.splits["train"]))
    assert len(part.splits["val"]) == len(full.splits["val"]) and len(part.splits["test"]) == len(full.splits["test"])
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError, match="train_fraction"):
        build(make_cfg("data=digits", "model=logistic", "data.train_fraction=0"))


def test_best_of_reads_a_finished_sweep_and_refuses_a_missing_one(tmp_path):
    from omegaconf import OmegaConf

    from archbench.config import best_of
    from archbench.errors import ConfigError

    (tmp_path / "sweep.json").write_text(json.dumps(
        {"best_params": {"optimizer.lr": 0.01, "optimizer.weight_decay": 0.0}}))
    assert best_of(OmegaConf.create({"best_of": str(tmp_path)})) == {"optimizer.lr": 0.01,
                                                                   "optimizer.weight_decay": 0.0}
    assert best_of(OmegaConf.create({"best_of": None})) == {}
    with pytest.raises(ConfigError, match="no sweep.json"):
        best_of(OmegaConf.create({"best_of": str(tmp_path / "missing")}))
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"data": "digits", "model": "mlp", "best_params": {"optimizer.lr": 0.01}}))
    pair = {"best_of": str(tmp_path), "data": {"name": "digits"}, "model": {"name": "mlp"}}
    assert best_of(OmegaConf.create(pair)) == {"optimizer.lr": 0.01}
    with pytest.raises(ConfigError, match=r"tuned mlp on digits, not this run's cnn on digits: sweep this pair"):
        best_of(OmegaConf.create({**pair, "model": {"name": "cnn"}}))


def _seed_run(folder, model, seed, acc, probs=None, targets=None, **run):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"data": "toy", "model": model, "task": "classification",
                                                 "seed": seed, "run_id": "r", **run}))
    (folder / "metrics.json").write_text(json.dumps({"test/acc": acc, "parameters": 10, "train_seconds": 1.0}))
    if probs is not None:
        np.savez_compressed(folder / "test_predictions.npz", probs=probs, targets=targets)


def test_report_words_its_verdict_from_the_tests(tmp_path):
    """Three models on the same 400 test examples over two seeds: `big` and `twin` make the same
    predictions (not distinguishable), `weak` is much worse (significant); the cheaper of the tied
    ones is named."""
    from archbench.report.compare import write_report

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 400)

    def probs(accuracy, salt):
        right = np.random.default_rng(salt).random(400) < accuracy
        predicted = np.where(right, targets, 1 - targets)
        p = np.full((400, 2), 0.2)
        p[np.arange(400), predicted] = 0.8
        return p

    results = tmp_path / "results"
    for seed in (1, 2):
        good = probs(0.9, seed)
        _seed_run(results / "toy-big" / f"seed{seed}", "big", seed, 0.9, good, targets)
        _seed_run(results / "toy-twin" / f"seed{seed}", "twin", seed, 0.9, good, targets)
        _seed_run(results / "toy-weak" / f"seed{seed}", "weak", seed, 0.6, probs(0.6, 10 + seed), targets)
    for name, flops in (("big", 1e6), ("twin", 1e3), ("weak", 1e2)):
        for seed in (1, 2):
            path = results / f"toy-{name}" / f"seed{seed}" / "metrics.json"
            metrics = json.loads(path.read_text())
            path.write_text(json.dumps({**metrics, "cost/flops_per_example": flops}))
    write_report(results, tmp_path / "reports")
    text = (tmp_path / "reports" / "comparison.md").read_text()
    verdict = text[text.index("- **toy**"):].splitlines()[0]
    assert "Not distinguishable from it:" in verdict and "Significantly below it: weak" in verdict
    assert "**twin**" in verdict or "best **twin**" in verdict  # the cheaper of the two ties is named
    assert (tmp_path / "reports" / "figures" / "toy-reliability.png").stat().st_size > 1000
    assert (tmp_path / "reports" / "figures" / "toy-pareto.png").stat().st_size > 1000
    assert "per-class accuracy" in text


def test_replicates_scored_on_different_test_examples_are_not_scored_on_one_seeds_labels(tmp_path):
    """Folds with their own test examples (a held-out speaker each): each fold's predictions are
    right for its own labels. Before, every fold was scored against the first fold's labels."""
    from archbench.report.classification import model_rows
    from archbench.tasks.base import RunResult

    first, second = np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])
    perfect = lambda targets: np.eye(2)[targets]  # noqa: E731
    _seed_run(tmp_path / "a", "cnn", 1, 1.0, perfect(first), first)
    _seed_run(tmp_path / "b", "cnn", 1, 1.0, perfect(second), second)
    runs = [RunResult(tmp_path / f, json.loads((tmp_path / f / "run.json").read_text()),
                      json.loads((tmp_path / f / "metrics.json").read_text())) for f in ("a", "b")]
    row = model_rows(runs)
    assert row.probs == [] and row.row.get("test/acc") == 1.0  # its metrics, no 50 % from mixed labels
    same = model_rows([runs[0], runs[0]])
    assert same.correct.all()


def test_efficiency_report_has_every_share_of_the_training_split(tmp_path):
    from archbench.report.efficiency import write_efficiency

    runs = tmp_path / "efficiency"
    for fraction, acc in ((0.1, 0.5), (0.5, 0.7), (1.0, 0.8)):
        for seed in (1, 2):
            _seed_run(runs / f"mlp-f{fraction}-seed{seed}", "mlp", seed, acc + seed / 100, train_fraction=fraction)
    assert write_efficiency([runs], tmp_path / "reports") == 1
    text = (tmp_path / "reports" / "efficiency.md").read_text()
    assert "| model | 10 % | 50 % | 100 % |" in text and "| mlp | 51.5 ± 0.7 | 71.5 ± 0.7 | 81.5 ± 0.7 |" in text
    assert (tmp_path / "reports" / "efficiency" / "toy.png").stat().st_size > 1000


@pytest.mark.slow
def test_seeds_side_by_side_end_where_solo_runs_end(tmp_path):
    """Seeds run by Hydra's joblib launcher (2 processes of 1 thread, as the pipeline runs its
    slower pairs) give exactly the metrics of a solo run of that seed with the same thread count."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    common = ["data=digits", "model=mlp", "trainer.max_epochs=3", "logger.log_model=false", "threads=1",
              f"paths.data_dir={tmp_path / 'prepared'}", "callbacks.progress_bar=none"]
    side_by_side = run_cli("archbench-train", "-m", "replicas=seeds", "seed=42,43", *common,
                           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           f"hydra.sweep.dir={tmp_path / 'pair'}", env=env)
    assert side_by_side.returncode == 0, side_by_side.stderr[-3000:]
    solo = call_cli("archbench-train", "seed=43", *common, f"hydra.run.dir={tmp_path / 'solo'}", env=env)
    assert solo.returncode == 0, solo.stderr[-3000:]
    replica = json.loads((tmp_path / "pair" / "seed43" / "metrics.json").read_text())
    alone = json.loads((tmp_path / "solo" / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc_then_loss_best", "epochs"):
        assert replica[key] == alone[key], key


def test_cross_validation_folds_partition_the_pool_and_leave_test_alone(make_cfg):
    """data.val_fold=k: validation is fold k of a stratified k-fold over the training pool; the
    folds are disjoint, cover the pool, and the test split is the default one."""
    from archbench.errors import ConfigError
    from archbench.train import build

    def splits(*overrides):
        dm = build(make_cfg("data=breast_cancer", "model=logistic", *overrides))[2]
        norm = dm.meta.normalization  # each variant is normalised with its own training statistics
        mean, std = np.array(norm["mean"]), np.array(norm["std"])
        # each example's row in the source table (nearest raw row): which examples a split holds
        return {k: {int(np.abs(table - row).sum(axis=1).argmin())
                    for row in dm.splits[k].x.numpy().astype(np.float64) * std + mean}
                for k in ("train", "val", "test")}

    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer().data

    default = splits()
    folds = [splits(f"data.val_fold={k}", "data.cv_folds=3") for k in range(3)]
    pool = default["train"] | default["val"]
    assert all(f["test"] == default["test"] for f in folds)
    assert set().union(*(f["val"] for f in folds)) == pool  # every pool example validates once
    assert sum(len(f["val"]) for f in folds) == len(pool)
    assert all(not (f["val"] & f["train"]) for f in folds)
    assert len(folds[0]["val"]) == pytest.approx(len(pool) / 3, abs=1)
    with pytest.raises(ConfigError, match="val_fold"):
        splits("data.val_fold=3", "data.cv_folds=3")


def test_training_memory_counts_parameters_gradients_activations_and_optimizer_state():
    from archbench.nets.cost import training_peak_bytes

    net = nn.Linear(64, 10)
    weights = 4 * (64 * 10 + 10)
    sgd = training_peak_bytes(net, torch.zeros(2, 64), 32, lambda p: torch.optim.SGD(p, lr=0.1))
    adam = training_peak_bytes(net, torch.zeros(2, 64), 32, lambda p: torch.optim.Adam(p, lr=0.1))
    big_batch = training_peak_bytes(net, torch.zeros(2, 64), 512, lambda p: torch.optim.SGD(p, lr=0.1))
    assert sgd >= 2 * weights  # weights and their gradients at least
    # Adam's two moments per weight, plus the temporaries of its update step (at the peak)
    assert 2 * weights <= adam - sgd <= 5 * weights
    assert big_batch - sgd >= 4 * 10 * (512 - 32)  # the output activations grow with the batch
    before = net.weight.detach().clone()
    training_peak_bytes(net, torch.ones(2, 64), 8, lambda p: torch.optim.SGD(p, lr=1.0))
    assert torch.equal(net.weight, before)  # measured on a copy: the trained weights are untouched


def test_training_memory_of_a_packed_sequence_text_rnn_is_measured():
    """Before, MemTracker failed on the PackedSequence an nn.LSTM reads: NaN in metrics.json."""
    from archbench.nets.cost import training_peak_bytes
    from archbench.nets.recurrent import TextRNN

    net = TextRNN([20], 2, vocab_size=100, embed_dim=16, hidden_size=16, bidirectional=True)
    words = torch.tensor([[5, 6, 7, 8, 0, 0] + [0] * 14, [9, 10, 0, 0, 0, 0] + [0] * 14])
    small, large = (training_peak_bytes(net, words, batch, lambda p: torch.optim.Adam(p)) for batch in (8, 256))
    assert 0 < small < large < float("inf")


def test_a_memory_tracker_failure_leaves_the_figure_out_not_the_run(monkeypatch):
    """A cost figure never fails a finished training: None and a warning, never NaN."""
    from archbench.nets import cost

    class Failing:
        def track_external(self, *modules):
            pass

        def __enter__(self):
            raise AssertionError("an input the hooks cannot walk")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cost, "_memory_tracker", Failing)
    with pytest.warns(UserWarning, match="training peak memory not measured"):
        assert cost.training_peak_bytes(nn.Linear(4, 2), torch.zeros(2, 4), 8, lambda p: torch.optim.SGD(p, lr=0.1)) is None


def test_validation_curves_of_a_dataset_share_one_figure(tmp_path):
    from types import SimpleNamespace

    from archbench.report.figures import curves_plot

    rows = []
    for name, level in (("mlp", 0.8), ("cnn", 0.9)):
        runs = []
        for seed in (1, 2):
            folder = tmp_path / f"{name}{seed}"
            folder.mkdir()
            (folder / "curves.csv").write_text(
                "epoch,val/acc,val/loss\n" + "".join(f"{e},{level + 0.01 * e * seed},{1 / (e + 1)}\n" for e in range(4)))
            runs.append(SimpleNamespace(folder=folder))
        rows.append(SimpleNamespace(name=name, row=SimpleNamespace(extra={"runs": runs})))
    out = tmp_path / "curves.png"
    assert curves_plot(rows, out, "toy") and out.stat().st_size > 5000
    assert not curves_plot([SimpleNamespace(name="x", row=SimpleNamespace(extra={"runs": []}))], out, "toy")


def test_refit_study_never_reads_the_test_split(bench_module):
    """bench/refit_protocol.py's nested folds come from the training pool only: no test example
    is in any fold; each fold's rest is what it learns from, and in refit mode its validation
    examples are also in training (the early-stopped run's own validation split)."""
    from archbench.data.prepare import split_pool
    from archbench.data.sources.sklearn_tables import breast_cancer

    refit_protocol = bench_module("refit_protocol")

    test_x = split_pool(refit_protocol.SPLIT, breast_cancer({}), 42)["test"][0]
    rows = lambda x: {row.tobytes() for row in x}  # noqa: E731
    early = refit_protocol.nested_source({"fold_seed": 1, "outer_fold": 2, "refit": False})
    refit = refit_protocol.nested_source({"fold_seed": 1, "outer_fold": 2, "refit": True})
    assert len(early.y_pool) + len(early.y_test) == 455  # the pool: train + val of the pipeline's split
    assert not rows(test_x) & (rows(early.x_pool) | rows(early.x_test))
    assert np.array_equal(refit.x_pool, early.x_pool) and np.array_equal(refit.x_test, early.x_test)
    val = split_pool(refit_protocol.SPLIT, early, 42)["val"][0]  # what the early-stopped run validates on
    assert rows(refit.x_val) == rows(val) and rows(val) <= rows(refit.x_pool)
    assert refit_protocol._steps_per_epoch(364, 32) == 12 and refit_protocol._steps_per_epoch(353, 32) == 11


def test_nested_grid_ranks_points_by_held_out_accuracy_then_loss(tmp_path, bench_module):
    """bench/small_data.py --nested: a point's score is the mean over its runs of the held-out
    fold's accuracy (ties: lower loss first); the fold and seed overrides do not split a point."""
    import yaml

    small_data = bench_module("small_data")

    runs = [("optimizer.weight_decay=0.01", 0, 42, 0.96, 0.10), ("optimizer.weight_decay=0.01", 1, 43, 1.00, 0.06),
            ("optimizer.weight_decay=0.1", 0, 42, 0.98, 0.07), ("optimizer.weight_decay=0.1", 1, 43, 0.98, 0.11),
            ("optimizer.weight_decay=0.001", 0, 42, 0.97, 0.05), ("optimizer.weight_decay=0.001", 1, 43, 0.97, 0.05)]
    for i, (point, fold, seed, acc, loss) in enumerate(runs):
        run_dir = tmp_path / f"nested{fold}" / f"{i}_mlp"
        (run_dir / ".hydra").mkdir(parents=True)
        (run_dir / ".hydra/overrides.yaml").write_text(yaml.safe_dump(
            ["data=breast_cancer", f"+data.outer_fold={fold}", f"seed={seed}", point]))
        (run_dir / "metrics.json").write_text(json.dumps({"test/acc": acc, "test/loss": loss}))
    rows = small_data.summarise_nested(tmp_path, {"optimizer.weight_decay=0.1": 0.95})
    assert [r["config"] for r in rows] == ["optimizer.weight_decay=0.01", "optimizer.weight_decay=0.1",
                                           "optimizer.weight_decay=0.001"]
    assert [r["runs"] for r in rows] == [2, 2, 2] and rows[0]["held_out_loss"] == pytest.approx(0.08)
    assert rows[1]["test_acc"] == 0.95 and rows[0]["test_acc"] is None
    assert "| 2 | `optimizer.weight_decay=0.1` | 98.00 | 0.0900 | 95.00 |" in small_data.nested_markdown(
        {"seconds": 1.0, "rows": rows})


def _summary(path, values: dict[int, float], metric: str = "val/acc_then_loss_best"):
    """A replica summary as replicas=seeds writes it beside its sweep dir (its own ``summarise``)."""
    path.write_text(json.dumps(summarise({s: {metric: v, "test/acc": v} for s, v in values.items()})))
    return path


def _odd(path, content):
    path.write_text(json.dumps(content))
    return path


def test_recipe_trial_welch_interval_by_hand_and_its_refusals(tmp_path):
    from archbench.report.trial import arm_values, describe, welch_difference

    (tmp_path / "in.txt").write_text("not json")
    base = [_summary(tmp_path / "a.json", {42: 0.80, 43: 0.81}), _summary(tmp_path / "a2.json", {44: 0.82})]
    trial = [_summary(tmp_path / "b.json", {42: 0.82, 43: 0.83, 44: 0.84})]
    diff = welch_difference(arm_values(base, "val/acc_then_loss_best"), arm_values(trial, "val/acc_then_loss_best"))
    # by hand: variances 1e-4 each, standard error sqrt(2e-4 / 3) = 0.008165, Welch df 4, t(0.975, 4) = 2.7764
    assert diff.delta == pytest.approx(0.02)
    assert (diff.low, diff.high) == pytest.approx((0.02 - 2.7764 * 0.008165, 0.02 + 2.7764 * 0.008165), abs=1e-5)
    assert not diff.resolved and diff.resolution == pytest.approx(0.02267, abs=1e-5)
    far = welch_difference([0.80, 0.81, 0.82], [0.90, 0.91, 0.92])
    assert far.resolved and far.low > 0
    # both arms constant (a saturated metric): a zero-width interval, not a resolved difference
    flat = welch_difference([0.9, 0.9], [1.0, 1.0])
    assert flat.constant and not flat.resolved
    assert "not judged: each arm reads the same on every seed" in describe(flat, "test/acc", 100)
    shown = call_cli("archbench-trial", *map(str, base), "--vs", str(trial[0]))
    assert shown.returncode == 0 and "trial − base: +2.00 [-0.27, +4.27]" in shown.stdout
    assert "(accuracy plus a loss tie-break worth under half a validation example" in shown.stdout
    for argv, expected in [([str(base[0]), str(base[0]), "--vs", str(trial[0])], "seed 42 is already in this arm"),
                           ([str(base[0]), "--vs", str(trial[0]), "--metric", "nope"], "has no 'nope'; valid: test/acc"),
                           ([str(base[1]), "--vs", str(trial[0])], "an arm needs at least 2 seeds, got 1"),
                           ([str(tmp_path / "none.json"), "--vs", str(trial[0])], "no replica summary"),
                           ([str(_summary(tmp_path / "nan.json", {1: None, 2: 0.8})), "--vs", str(trial[0])],
                            "seed 1's val/acc_then_loss_best is None, not a finite number"),
                           ([str(trial[0]), "--vs", str(tmp_path / "in.txt")], "is not a replica summary"),
                           ([str(_odd(tmp_path / "list.json", {"seeds": [1, 2]})), "--vs", str(trial[0])],
                            "is not a replica summary"),  # before: tracebacks, for these two
                           ([str(_odd(tmp_path / "flat.json", {"seeds": {"1": 0.5, "2": 0.6}})), "--vs", str(trial[0])],
                            "is not a replica summary"),
                           ([*map(str, base), "--vs", str(trial[0]), "--scale", "inf"], "--scale must be a finite number > 0, got inf"),
                           ([*map(str, base), "--vs", str(trial[0]), "--scale", "-1"], "--scale must be a finite number > 0, got -1")]:
        refused = call_cli("archbench-trial", *argv)
        [line] = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and refused.stdout == "" and expected in line, line



def test_recipe_trial_decides_by_the_runs_own_validation_metric(tmp_path):
    """Before, every trial defaulted to a classifier's val/acc_then_loss_best: a rating, ranking,
    language-model or GAN summary was refused unless --metric named its metric."""
    from archbench.cli.trial import main as trial

    base = _summary(tmp_path / "a.json", {1: 1.18, 2: 1.19, 3: 1.18}, metric="val/rmse_best")
    other = _summary(tmp_path / "b.json", {1: 1.21, 2: 1.22, 3: 1.20}, metric="val/rmse_best")
    shown = call_cli("archbench-trial", str(base), "--vs", str(other))
    assert shown.returncode == 0 and shown.stdout.startswith("val/rmse_best\n")
    assert "trial − base: +0.03 [" in shown.stdout and "base : 1.18 ± 0.01" in shown.stdout  # scale 1, not %
    both = tmp_path / "two.json"
    both.write_text(json.dumps(summarise({1: {"val/loss_best": 1.0, "val/bpc_best": 1.4},
                                          2: {"val/loss_best": 1.1, "val/bpc_best": 1.5}})))
    with pytest.raises(SystemExit) as refused:
        trial([str(both), "--vs", str(both)])
    assert refused.value.code == 2
