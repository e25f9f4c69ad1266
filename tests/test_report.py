import json
from pathlib import Path

import pytest
from conftest import call_cli

from archbench.report.compare import write_report


def _run(folder, data, model, metrics, sample=None, task="classification"):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"data": data, "model": model, "task": task,
                                                 "run_id": "abcdef123456"}))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if sample:
        (folder / "sample.txt").write_text(sample)


def test_report_has_classification_and_language_model_tables(tmp_path):
    results = tmp_path / "results"
    _run(results / "digits-cnn", "digits", "cnn", {"test/acc": 0.98, "test/f1": 0.97, "val/acc_best": 0.99,
                                                   "epochs": 40, "train_seconds": 12.3, "parameters": 53002})
    _run(results / "digits-mlp", "digits", "mlp", {"test/acc": 0.95, "test/f1": 0.94, "val/acc_best": 0.96,
                                                   "epochs": 20, "train_seconds": 4.0, "parameters": 9610})
    _run(results / "pydoc_text-lstm", "pydoc_text", "lstm",
         {"test/loss": 1.5, "test/bpc": 2.164, "val/loss_best": 1.4, "train_seconds": 30, "parameters": 1000},
         sample="\nThe object is a sample", task="language_model")
    assert write_report(results, tmp_path / "reports") == 3
    text = (tmp_path / "reports" / "comparison.md").read_text()
    assert text.index("| cnn | 1 |") < text.index("| mlp | 1 |")  # best first
    assert "| cnn | 1 | 98.0 | – |" in text and "53,002" in text
    assert "**digits**: best **cnn** (98.0 %, n = 1 seed)" in text  # no predictions: no tests
    assert "| pydoc_text | lstm | 1 | 1,000 | 2.020 | 2.164 | – | 1.500 | 30.0 |" in text
    assert "The object is a sample" in text
    assert (tmp_path / "reports" / "comparison.png").stat().st_size > 1000


def test_runs_with_other_settings_than_the_seed_are_not_averaged_as_seeds(tmp_path, capsys):
    """A folder of hand runs (archbench-compare outputs/): same pair, other settings, same seed.
    Before, they were one row of "7 seeds" averaging different experiments."""
    import os

    import yaml

    results = tmp_path / "results"

    def run(name, acc, seed=42, epochs=20, lr=1e-3, speaker=None, age=0):
        _run(results / name, "digits", "mlp", {"test/acc": acc})
        config = {"seed": seed, "trainer": {"max_epochs": epochs, "devices": 1},
                  "optimizer": {"lr": lr}, "paths": {"output_dir": str(results / name)},
                  "data": {"test_speaker": speaker}}
        (results / name / "config.yaml").write_text(yaml.safe_dump(config))
        os.utime(results / name / "metrics.json", (1e9 + age, 1e9 + age))

    for seed, acc in ((42, 0.95), (43, 0.96), (44, 0.97)):
        run(f"a{seed}", acc, seed=seed)  # three seeds of one experiment
    run("b", 0.50, epochs=1)  # a shorter training
    run("c", 0.90, lr=1e-2)  # another learning rate
    run("d_old", 0.10, epochs=1, age=-5)  # b's settings and seed again, older: left out
    run("e_george", 0.80, lr=3e-3, speaker="george")  # two folds of one experiment
    run("e_lucas", 0.82, lr=3e-3, speaker="lucas")
    assert write_report(results, tmp_path / "reports") == 7
    said = capsys.readouterr().out
    assert f"1 run(s) repeat the settings and seed of a newer run and are left out (not independent " \
           f"replicates), or trained on an earlier version of its files, e.g. {results / 'd_old'}" in said
    text = (tmp_path / "reports" / "comparison.md").read_text()
    assert "| mlp | 3 | 96.0 ± 1.0 |" in text
    assert "| mlp (trainer.max_epochs=1) | 1 | 50.0 |" in text
    assert "| mlp (optimizer.lr=0.01) | 1 | 90.0 |" in text
    assert "| mlp (optimizer.lr=0.003) | 2 | 81.0 ± 1.4 |" in text  # folds
    assert "10.0" not in text


def test_one_dataset_name_over_two_files_is_two_datasets(tmp_path):
    """Two of one's own tables are both data=csv: before, their models were ranked in one "csv"
    table under one verdict, as if scored on one test set."""
    import yaml

    results = tmp_path / "results"

    def run(name, table, checksum, model, acc, seed=42):
        _run(results / name, "csv", model, {"test/acc": acc})
        meta = json.loads((results / name / "run.json").read_text())
        (results / name / "run.json").write_text(json.dumps({**meta, "data_checksum": checksum, "seed": seed}))
        config = {"seed": seed, "data": {"name": "csv", "path": f"/home/me/{table}"}, "model": {"name": model}}
        (results / name / "config.yaml").write_text(yaml.safe_dump(config))

    run("w1", "wine.csv", "sha256:w", "logistic", 0.97)
    run("w2", "wine.csv", "sha256:w", "mlp", 0.95)
    run("w3", "wine.csv", "sha256:w", "mlp", 0.96, seed=43)
    run("t1", "titanic.csv", "sha256:t", "logistic", 0.79)
    assert write_report(results, tmp_path / "reports") == 4
    text = (tmp_path / "reports" / "comparison.md").read_text()
    assert "### csv (wine.csv)" in text and "### csv (titanic.csv)" in text
    assert "**csv (wine.csv)**: best **logistic** (97.0 %, n = 1 seed)" in text
    assert "**csv (titanic.csv)**: best **logistic** (79.0 %, n = 1 seed)" in text
    assert "| mlp | 2 | 95.5 ± 0.7 |" in text  # its two seeds, one table


def test_runs_on_an_earlier_version_of_ones_table_are_left_out(tmp_path, capsys):
    """wine.csv edited between runs at the same path: before, seeds on the old and the new table
    were averaged as replicates of one dataset."""
    import os

    import yaml

    results = tmp_path / "results"
    for age, (name, checksum, seed, acc) in enumerate([("new43", "sha256:new", 43, 0.90), ("new42", "sha256:new", 42, 0.92),
                                                        ("old42", "sha256:old", 42, 0.60), ("old44", "sha256:old", 44, 0.62)]):
        _run(results / name, "csv", "mlp", {"test/acc": acc})
        meta = json.loads((results / name / "run.json").read_text())
        (results / name / "run.json").write_text(json.dumps({**meta, "data_checksum": checksum, "seed": seed}))
        config = {"seed": seed, "data": {"name": "csv", "path": "/home/me/wine.csv"}, "model": {"name": "mlp"}}
        (results / name / "config.yaml").write_text(yaml.safe_dump(config))
        stamp = 1_000_000 - 1000 * age  # the first listed is the newest
        os.utime(results / name / "metrics.json", (stamp, stamp))
    assert write_report(results, tmp_path / "reports") == 2
    assert "2 run(s) repeat the settings and seed of a newer run" in capsys.readouterr().out
    assert "| mlp | 2 | 91.0 ± 1.4 |" in (tmp_path / "reports" / "comparison.md").read_text()


def test_report_has_a_generative_table_with_anchors_and_the_sample_grid(tmp_path):
    results = tmp_path / "results"
    _run(results / "digits-gan", "digits", "gan",
         {"test/fid": 12.5, "test/fid_real_floor": 1.84, "test/fid_untrained": 950.0,
          "test/classes_covered": 10, "epochs": 60, "train_seconds": 40.0, "parameters": 916801},
         task="adversarial")
    run = json.loads((results / "digits-gan" / "run.json").read_text())
    (results / "digits-gan" / "run.json").write_text(json.dumps({**run, "num_classes": 10}))
    (results / "digits-gan" / "samples.png").write_bytes(b"\x89PNG fake")
    write_report(results, tmp_path / "reports")
    text = (tmp_path / "reports" / "comparison.md").read_text()
    assert "| digits | gan | 1 | 916,801 | 12.50 | – | 1.84 | 950.0 | 76× | 10/10 | – | – | 60 | 40.0 |" in text
    assert "![gan samples](samples/digits-gan.png)" in text
    assert (tmp_path / "reports" / "samples" / "digits-gan.png").read_bytes() == b"\x89PNG fake"


def test_report_has_a_regression_section_in_the_targets_units(tmp_path):
    """A fourth task brings its own section: RMSE from the MSE, MAE and R², best R² first."""
    results = tmp_path / "results"
    for model, mse, r2 in (("linear", 2858.6, 0.46), ("mlp", 2623.5, 0.505)):
        _run(results / f"diabetes-{model}", "diabetes", model,
             {"test/mse": mse, "test/mae": 42.0, "test/r2": r2, "epochs": 50, "train_seconds": 1.0,
              "parameters": 11}, task="regression")
    write_report(results, tmp_path / "reports")
    text = (tmp_path / "reports" / "comparison.md").read_text()
    assert "## Regression" in text and "## Classification" not in text
    assert "| diabetes | mlp | 1 | 51.22 | – | – |  | 42.00 | 0.505 | 11 | 50 | 1.0 |" in text
    assert text.index("| diabetes | mlp |") < text.index("| diabetes | linear |")


def test_regression_seeds_show_their_spread_and_an_rmse_interval_that_covers_the_truth(tmp_path):
    """Before, the regression, language-model and generative tables showed seed means alone."""
    import numpy as np

    results, rng = tmp_path / "results", np.random.default_rng(0)
    targets = rng.normal(150, 70, 400)  # one test split, shared by both models
    for model, noise, r2 in (("mlp", 50, 0.5), ("linear", 60, 0.4)):  # true RMSE 50 and 60
        for seed in (1, 2, 3):
            folder = results / f"diabetes-{model}" / f"seed{seed}"
            predictions = targets + rng.normal(0, noise, 400)
            mse = float(np.mean((predictions - targets) ** 2))
            _run(folder, "diabetes", model, {"test/mse": mse, "test/mae": 40.0 + seed, "test/r2": r2,
                                             "epochs": 50, "train_seconds": 1.0, "parameters": 11}, task="regression")
            run = json.loads((folder / "run.json").read_text())
            (folder / "run.json").write_text(json.dumps({**run, "seed": seed}))
            np.savez_compressed(folder / "test_predictions.npz", predictions=predictions, targets=targets)
    write_report(results, tmp_path / "reports")
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in (tmp_path / "reports" / "comparison.md").read_text().splitlines() if line.startswith("| diabetes |")}
    mlp, linear = rows["mlp"], rows["linear"]
    assert mlp[2] == "3" and " ± " in mlp[3] and mlp[7] == "42.00 ± 1.00"
    low, high = map(float, mlp[4].split("–"))
    assert low < 50 < high and high - low < 10  # 1,200 errors pin the RMSE within a few units
    assert mlp[5:7] == ["best", ""]
    delta, interval = linear[5].split(" [")
    assert 5 < float(delta) < 15 and float(interval.split(",")[0]) > 0 and linear[6].endswith(" *")  # 60 vs 50: resolved


def _seeded_rows(results, task, data, models, write):
    """Three seeds per model, each with ``write(folder, model, seed)`` giving its metrics (and its
    test_predictions.npz); the report's rows as cells by model."""
    for model in models:
        for seed in (1, 2, 3):
            folder = results / f"{data}-{model}" / f"seed{seed}"
            folder.mkdir(parents=True)
            metrics = {**write(folder, model, seed), "epochs": 10, "train_seconds": 1.0, "parameters": 99}
            (folder / "run.json").write_text(json.dumps({"data": data, "model": model, "task": task,
                                                         "run_id": "abcdef123456", "seed": seed}))
            (folder / "metrics.json").write_text(json.dumps(metrics))


def _table_rows(reports, data):
    return {line.split("|")[2].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in (reports / "comparison.md").read_text().splitlines() if line.startswith(f"| {data} |")}


def test_rating_and_ranking_tables_show_seed_spread_intervals_and_paired_tests(tmp_path):
    """Before, both tables showed one number per pair, with no seeds, interval or test."""
    import numpy as np

    results, rng = tmp_path / "results", np.random.default_rng(0)
    ratings = rng.integers(1, 6, 2000).astype(float)
    users = 600

    def rated(folder, model, seed):  # true RMSE 0.90 (mf) and 1.00 (gmf)
        predictions = ratings + rng.normal(0, {"mf": 0.9, "gmf": 1.0}[model], ratings.size)
        np.savez_compressed(folder / "test_predictions.npz", predictions=predictions, targets=ratings)
        return {"test/rmse": float(np.sqrt(np.mean((predictions - ratings) ** 2))), "test/mae": 0.7}

    def ranked(folder, model, seed):  # hit rates 0.65 (neumf) and 0.60 (mf), for the same users
        hits = (rng.random(users) < {"neumf": 0.65, "mf": 0.60}[model]).astype(float)
        np.savez_compressed(folder / "test_predictions.npz", hits=hits, ndcg=hits / 2)
        return {"test/hr_at_10": float(hits.mean()), "test/ndcg_at_10": float(hits.mean() / 2)}

    _seeded_rows(results, "rating", "movielens", ("mf", "gmf"), rated)
    _seeded_rows(results, "ranking", "movielens_ranking", ("neumf", "mf"), ranked)
    write_report(results, tmp_path / "reports")
    mf, gmf = (_table_rows(tmp_path / "reports", "movielens")[m] for m in ("mf", "gmf"))
    assert mf[2] == "3" and " ± " in mf[3] and mf[5:7] == ["best", ""]
    low, high = map(float, mf[4].split("–"))
    assert low < 0.9 < high and high - low < 0.06  # 6,000 errors pin the RMSE within a few hundredths
    delta, interval = gmf[5].split(" [")
    assert 0.05 < float(delta) < 0.15 and float(interval.split(",")[0]) > 0 and gmf[6].endswith(" *")
    neumf, plain = (_table_rows(tmp_path / "reports", "movielens_ranking")[m] for m in ("neumf", "mf"))
    assert neumf[2] == "3" and neumf[5:7] == ["best", ""]
    low, high = map(float, neumf[4].split("–"))
    assert low < 0.65 < high
    delta = float(plain[5].split(" [")[0])
    assert -0.10 < delta < 0  # 5 points on 600 users: what the paired test weighs, whatever it decides
    assert float(plain[6].rstrip(" *")) <= 1


def test_translation_table_has_bleu_intervals_and_paired_tests_over_test_sentences(tmp_path):
    """Before, one BLEU per pair with nothing to say whether 34.4 against 33.9 is a difference."""
    import csv

    import numpy as np

    from archbench.tasks.seq2seq import corpus_bleu

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    references = [" ".join(rng.choice(words, size=int(rng.integers(8, 16)))) for _ in range(400)]

    def garbled(rate: float) -> list[str]:  # each word replaced with probability ``rate``
        return [" ".join(w if rng.random() > rate else str(rng.choice(words)) for w in r.split()) for r in references]

    results, scores = tmp_path / "results", {}
    for model, rate in (("seq2seq_transformer", 0.10), ("seq2seq_attention", 0.11), ("seq2seq_gru", 0.30)):
        folder = results / f"multi30k-{model}"
        hypotheses = garbled(rate)
        scores[model] = corpus_bleu(hypotheses, references)
        _run(folder, "multi30k", model, {"test/bleu": scores[model], "test/bleu_beam": scores[model],
                                         "test/bleu_greedy": scores[model], "test/ppl": 9.0, "epochs": 5,
                                         "train_seconds": 60.0, "parameters": 1000}, task="seq2seq")
        with (folder / "translations.tsv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerows([["source", "reference", "greedy", "beam"],
                              *[["x", r, h, h] for r, h in zip(references, hypotheses, strict=True)]])
    write_report(results, tmp_path / "reports")
    rows = _table_rows(tmp_path / "reports", "multi30k")
    best, close, far = rows["seq2seq_transformer"], rows["seq2seq_attention"], rows["seq2seq_gru"]
    for model, row in rows.items():  # sacreBLEU's interval around the table's own (torchmetrics) BLEU
        low, high = map(float, row[8].split("–"))
        assert low < scores[model] < high and high - low < 8, model
    assert best[9:11] == ["best", ""]
    assert float(far[9]) == pytest.approx(scores["seq2seq_gru"] - scores["seq2seq_transformer"], abs=0.051)
    assert far[10].endswith(" *") and float(far[10].rstrip(" *")) < 0.05  # 30 % of words wrong against 10 %
    assert -3 < float(close[9]) < 0 and not close[10].endswith(" *")  # 10 % against 11 %: not resolved


def test_ctc_table_has_the_digit_error_rates_interval_and_the_strings_it_got_wrong(tmp_path):
    """Before, the transcription table had no test at all, and no interval."""
    import numpy as np
    from torchmetrics.functional.text import word_error_rate

    rng = np.random.default_rng(0)
    references = [" ".join(map(str, rng.integers(0, 10, int(rng.integers(1, 8))))) for _ in range(500)]

    def said(reference: str) -> str:  # each digit misheard with probability 0.05, some dropped
        digits = [d if rng.random() > 0.05 else str(rng.integers(0, 10)) for d in reference.split()]
        return " ".join(d for d in digits if rng.random() > 0.01)

    def transcribed(folder, model, seed):
        beams = [said(r) for r in references]
        folder.joinpath("transcripts.tsv").write_text("reference\tgreedy\tbeam\n" + "".join(
            f"{r}\t{b}\t{b}\n" for r, b in zip(references, beams, strict=True)))
        wer = float(word_error_rate(beams, references))
        return {"test/wer": wer, "test/wer_beam": wer, "test/wer_greedy": wer, "test/ser": 0.2}

    _seeded_rows(tmp_path / "results", "ctc", "fsdd_strings", ("deepspeech",), transcribed)
    write_report(tmp_path / "results", tmp_path / "reports")
    row = _table_rows(tmp_path / "reports", "fsdd_strings")["deepspeech"]
    low, high = map(float, row[7].split("–"))
    assert low < float(row[6].split(" ± ")[0]) < high and high - low < 3  # ~1,800 digits × 3 seeds
    assert low < 100 * (0.05 * 0.9 + 0.01) < high  # the rate the transcripts were made with
    assert "strings wrong." in (tmp_path / "reports" / "comparison.md").read_text()


def test_ratio_interval_pools_errors_over_words_not_per_example_rates():
    import numpy as np

    from archbench.report.stats import ratio_ci

    words = np.array([1.0] * 900 + [10.0] * 100)  # long examples carry half the words
    errors = np.array([[0.0] * 900 + [5.0] * 100])  # ... and every error: pooled rate 500 / 1,900
    low, high = ratio_ci(errors, words)
    assert low < 500 / 1900 < high and high < 0.35  # a mean of per-example rates would say 0.05


def test_seed_intervals_of_metrics_without_per_example_values():
    from archbench.report.replicates import seed_interval
    from archbench.tasks.base import RunResult

    runs = [RunResult(Path("."), {}, {"test/bpc": v}) for v in (2.0, 2.2, 2.4)]
    low, high = map(float, seed_interval(RunResult(Path("."), {}, {}, {"runs": runs}), "test/bpc").split("–"))
    assert 2.0 <= low < 2.2 < high <= 2.4  # within the seeds' range, around their mean
    assert seed_interval(RunResult(Path("."), {}, {}, {"runs": runs[:1]}), "test/bpc") == "–"


def test_reference_baselines_fit_on_train_and_val_only():
    """Test labels are the opposite rule of train/val labels: a model fitted on train+val only
    gets the test split all wrong; one that saw the test split could not."""
    import numpy as np

    from archbench.report.baselines import fit_and_score

    rng = np.random.default_rng(0)

    def split(n: int, flip: bool) -> dict:
        x = rng.normal(size=(n, 1, 3)).astype(np.float32)
        y = ((x[:, 0, 0] > 0) ^ flip).astype(np.int64)
        return {"x": x, "y": y}

    splits = {"train": split(300, False), "val": split(60, False), "test": split(200, True)}
    for name in ("LogisticRegression", "SVC (RBF)", "HistGradientBoosting"):
        assert fit_and_score(name, "classification", splits)["test/acc"] < 0.1, name
    target = {"mean": 100.0, "std": 10.0}
    splits = {s: {"x": v["x"], "y": v["x"][:, 0, 0].astype(np.float64)} for s, v in splits.items()}
    scored = fit_and_score("LinearRegression", "regression", splits, target)
    assert scored["test/r2"] > 0.999 and scored["test/mae"] < 1e-3  # exact linear target, in units


def test_report_adds_reference_rows_only_for_the_data_the_runs_saw(tmp_path, capsys):
    from archbench.config import compose
    from archbench.data.prepare import prepare

    data_root = tmp_path / "prepared"
    meta = prepare({"name": "breast_cancer", "source": compose(["data=breast_cancer"]).data.source,
                    "seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, data_root / "breast_cancer")
    results = tmp_path / "results"
    _run(results / "breast_cancer-mlp", "breast_cancer", "mlp",
         {"test/acc": 0.93, "test/f1": 0.92, "val/acc_best": 1.0, "epochs": 11, "train_seconds": 0.4,
          "parameters": 4226})
    write_report(results, tmp_path / "reports", data_root)
    assert "(reference)" not in (tmp_path / "reports" / "comparison.md").read_text()  # checksum unknown
    run_file = results / "breast_cancer-mlp" / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "data_checksum": meta.checksum}))
    write_report(results, tmp_path / "reports", data_root)
    text = (tmp_path / "reports" / "comparison.md").read_text()
    assert "| *LogisticRegression (reference)* | – | 98.2 |" in text
    assert text.count("(reference)*") == 3
    # without a data root (a run made elsewhere, a variant folder): the folder the run recorded
    write_report(results, tmp_path / "reports", None)
    assert "(reference)*" not in (tmp_path / "reports" / "comparison.md").read_text()
    assert "breast_cancer: no reference rows (the prepared data its runs trained on is in neither" in capsys.readouterr().out
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "data_dir": str(data_root / "breast_cancer")}))
    write_report(results, tmp_path / "reports", None)
    assert (tmp_path / "reports" / "comparison.md").read_text().count("(reference)*") == 3


def test_reference_rows_get_an_interval_and_paired_tests_against_the_best(tmp_path):
    """Before, a reference row was one accuracy: nothing said whether the nets' 96.5 % against
    LogisticRegression's 98.2 % on breast_cancer's 114 test examples is a difference."""
    import numpy as np

    from archbench.config import compose
    from archbench.data.prepare import prepare
    from archbench.data.store import load_all

    data_root = tmp_path / "prepared"
    meta = prepare({"name": "breast_cancer", "source": compose(["data=breast_cancer"]).data.source,
                    "seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, data_root / "breast_cancer")
    targets = load_all(data_root / "breast_cancer")[1]["test"]["y"].numpy()
    results = tmp_path / "results"
    for model, wrong in (("mlp", 4), ("perceptron", 30)):  # 4 and 30 of the 114 test examples wrong
        folder = results / f"breast_cancer-{model}"
        _run(folder, "breast_cancer", model, {"test/acc": 1 - wrong / targets.size, "val/acc_best": 1.0,
                                              "epochs": 11, "train_seconds": 0.4, "parameters": 99})
        run = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**run, "data_checksum": meta.checksum}))
        predicted = targets.copy()
        predicted[:wrong] = 1 - predicted[:wrong]
        np.savez_compressed(folder / "test_predictions.npz", probs=np.eye(2)[predicted], targets=targets)
    write_report(results, tmp_path / "reports", data_root)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in (tmp_path / "reports" / "comparison.md").read_text().splitlines()
            if line.startswith("| ") and line.count("|") > 10}  # the accuracy table's rows
    logistic = rows["*LogisticRegression (reference)*"]
    assert logistic[2] == "98.2"
    low, high = map(float, logistic[3].split("–"))
    assert low < 98.2 < high <= 100
    delta, interval = logistic[4].split(" [")
    assert float(delta) == pytest.approx(98.2 - 96.5, abs=0.1) and float(interval.split(",")[0]) < 0
    assert not logistic[5].endswith("*") and logistic[6] == "0/1"  # two examples: not distinguishable
    assert rows["perceptron"][5].endswith(" *")  # the trained family: 30 wrong against 4 is resolved


def test_regression_references_are_compared_in_a_family_of_their_own():
    """Adding reference rows must not change the trained models' p-values (their Holm family)."""
    import numpy as np

    from archbench.report.paired import row_arrays, squared_errors, versus_best
    from archbench.report.stats import paired_rmse_bootstrap
    from archbench.tasks.base import RunResult

    rng = np.random.default_rng(0)
    errors = {name: rng.normal(0, noise, 300) ** 2 for name, noise in (("mlp", 50), ("linear", 53), ("svr", 45))}
    trained = [RunResult(Path("."), {"data": "diabetes", "model": m}, {}, {"runs": []}) for m in ("mlp", "linear")]
    svr = RunResult(Path("."), {"data": "diabetes", "model": "SVR (reference)", "reference": True}, {},
                    {"squared_errors": errors["svr"]})
    arrays = {id(r): errors[r.run["model"]][None] for r in trained} | {id(svr): row_arrays(svr, squared_errors,
                                                                                          "squared_errors")}
    alone = versus_best(trained, arrays, paired_rmse_bootstrap, lower_is_better=True)
    both = versus_best([*trained, svr], arrays, paired_rmse_bootstrap, lower_is_better=True)
    assert both[id(trained[0])] == ("best", "") and both[id(trained[1])] == alone[id(trained[1])]
    assert float(both[id(svr)][0].split(" [")[0]) < 0  # a reference better than the best net says so


def test_compare_refuses_folders_without_runs_and_keeps_the_reports(tmp_path, closed_port):
    results, reports = tmp_path / "results", tmp_path / "reports"
    _run(results / "digits-cnn", "digits", "cnn", {"test/acc": 0.98, "val/acc_best": 0.99})
    (results / "digits-mlp").mkdir()  # a run that never finished: no run.json, no metrics.json
    reports.mkdir()
    (reports / "comparison.md").write_text("the full report\n")
    refused = call_cli("archbench-compare", str(results / "digits-mlp"), str(reports))
    [line] = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and "no finished runs in" in line and "run `dvc repro` first" in line
    assert (reports / "comparison.md").read_text() == "the full report\n"
    (reports / "efficiency.md").write_text("the full efficiency report\n")
    # runs to compare, but no data-efficiency runs
    refused = call_cli("archbench-compare", str(results), str(reports), "--efficiency", str(results / "digits-mlp"))
    [line] = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and "no finished runs in" in line and "make efficiency" in line
    assert (reports / "comparison.md").read_text() == "the full report\n"  # nothing written at all
    assert (reports / "efficiency.md").read_text() == "the full efficiency report\n"
    # before, a --data that is not a folder silently left out the reference rows; --mlflow at a server
    # that is down failed after minutes of MLflow's retries, the report already replaced
    for option, said in [(["--data", str(tmp_path / "none")], f"--data {tmp_path / 'none'}: no such folder"),
                         (["--mlflow", f"http://127.0.0.1:{closed_port}"], "--mlflow: no server answers at "),
                         (["--mlflow", str(tmp_path / "mlruns")], "--mlflow must be a database or server URI")]:
        refused = call_cli("archbench-compare", str(results), str(reports), *option)
        [line] = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and line.startswith(f"archbench-compare: error: {said}"), line
        assert (reports / "comparison.md").read_text() == "the full report\n"
    (tmp_path / "a-file").write_text("")
    refused = call_cli("archbench-compare", str(results), str(tmp_path / "a-file"))
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"archbench-compare: error: cannot use {tmp_path / 'a-file'}: File exists (a file stands where a folder is needed)")
    (tmp_path / "prepared").mkdir()  # prepared data without this run's dataset: no reference rows
    done = call_cli("archbench-compare", str(results), str(reports), "--data", str(tmp_path / "prepared"))
    assert done.returncode == 0 and "| cnn | 1 | 98.0 |" in (reports / "comparison.md").read_text()
