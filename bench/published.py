"""Results beside published references, each with its seed and budget.

Figures a pipeline trains (the default one, or the text, translation, vision or speech pipeline) are
read from its seed-42 run folder, results/[<pipeline>/]train/<key>/seed42/, or, where that folder is
not in the checkout (a pipeline's run folders are DVC outs), from seed 42 of the summary the
pipeline commits beside it (results/[<pipeline>/]train/<key>.json); its budget is then the pair's
recipe as composed now. The rest are trained here with `archbench-train` (default recipe, seed 42)
into results/bench/published/<key>/ — a re-run with an unchanged config only re-tests
(resume=auto), --retrain starts afresh. Writes reports/benchmarks/published.{json,md}.

    python bench/published.py [--retrain] [--only KEY ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from common import BIN, ROOT, SHARED_DATASETS, venv_env, write_report
from omegaconf import OmegaConf

MNIST1D_PAPER = "MNIST-1D paper (Greydanus 2020), Table 1"
NANOGPT = ("nanoGPT README, shakespeare_char on CPU: 4 layers, 4 heads, 128 embedding, context 64, "
           "batch 12, 2,000 iterations")


@dataclass
class Entry:
    data: str
    model: str
    reference: float | None = None
    source: str = ""
    overrides: list[str] = field(default_factory=list)
    needs: Path | None = None  # a local file the run reads (the shared datasets, a user's CIFAR-10)
    label: str = ""  # the row's name when one model has several rows (resnet20, resnet56)
    metric: str = ""  # another metric than the task's usual one: its label in the report...
    read: str = ""  # ...the metrics.json key it is read from...
    sign: float = 1.0  # ...and a factor (-1: a VAE's test/elbo as the reference's loss, −ELBO)

    @property
    def key(self) -> str:
        return f"{self.data}-{self.label or self.model}"

    @property
    def language_model(self) -> bool:
        return self.data == "tinyshakespeare"

    @property
    def translation(self) -> bool:
        return self.data == "multi30k"


SHAKESPEARE = SHARED_DATASETS / "tinyshakespeare" / "input.txt"
SST2 = SHARED_DATASETS / "sst2"
SST2_RUN = [f"data.root={SST2}", "paths.data_dir=data/text"]  # the text pipeline's prepared data
KIM = "Kim 2014, CNN-rand (random embeddings), on Kim's own SST-2 test set (1,821 sentences), not GLUE dev"
GLUE_BILSTM = "GLUE paper (Wang et al. 2018), single-task BiLSTM baseline, with pretrained GloVe embeddings"
KERAS_BOW = "Keras guide 'text classification from scratch'-style bag-of-words logistic model, 5 epochs"
MULTI30K = SHARED_DATASETS / "multi30k"
MULTI30K_RUN = [f"data.root={MULTI30K}", "paths.data_dir=data/translation"]  # the translation pipeline's
BENTREVETT = ("bentrevett/pytorch-seq2seq on Multi30k de→en test2016, 10 epochs on a GPU, greedy decoding, "
              "spaCy tokens, torchtext BLEU")
# CIFAR-10 and Fashion-MNIST cannot be downloaded on the machines archbench is measured on: their rows
# fill in where a user has put the official files in data/raw/<name>/ (conf/data/<name>.yaml's root)
CIFAR10 = ROOT / "data" / "raw" / "cifar10"
CIFAR10_FILE = CIFAR10 / "cifar-10-batches-py" / "test_batch"
FASHION = ROOT / "data" / "raw" / "fashion_mnist"
FASHION_FILE = FASHION / "t10k-images-idx3-ubyte.gz"
HE = "He et al. 2016, Table 6 (CIFAR-10 test error {:.2f} %; 45k/5k split, 182 epochs, pad-crop-flip)"
RASBT = "rasbt/deeplearning-models, LeNet-5 on CIFAR-10: 10 epochs, Adam, no augmentation"
FASHION_README = ("Fashion-MNIST benchmark table (zalandoresearch/fashion-mnist README, "
                  "official 60k/10k split)")
FSDD = SHARED_DATASETS / "fsdd"
FSDD_RUN = [f"data.root={FSDD}", "paths.data_dir=data/speech"]  # the speech pipeline's prepared data
GLASS = ("GLaSS-CNN (Engineering Research Express 7(4) 045394, 2025): log-spectrogram CNN, 99.3 % on "
         "noise-free FSDD; its split is not stated as the official index 0-4 test split")
SOUND_MNIST = ("Adhish Thite's sound-mnist: MFCC CNN, 97 % on a random 10 % split of the 3-speaker "
               "FSDD release (ours: the official split of the 6-speaker one)")
SPEECH = [
    Entry("fsdd", "cnn", 0.993, GLASS, FSDD_RUN, FSDD / "recordings" / "0_george_0.wav"),
    Entry("fsdd", "cnn", 0.97, SOUND_MNIST, [*FSDD_RUN, "data.features.kind=mfcc"], FSDD / "recordings" / "0_george_0.wav", "cnn-mfcc"),
]
MNIST = SHARED_DATASETS / "mnist"
MNIST_FILE = MNIST / "t10k-images-idx3-ubyte.gz"
PYTORCH_VAE = ("PyTorch examples' vae/main.py: 784-400-20 MLP, Bernoulli decoder on grey values, Adam 1e-3, "
               "batch 128, 10 epochs on the full 60k training set, test loss (BCE + KL) per image")
IWAE = ("Burda et al. 2016 (IWAE), Table 1: VAE, k = 1, one stochastic layer of 50 (784-200-200-50, tanh), "
        "dynamically binarised MNIST (60k), 3,280 passes, −log p(x) by k = 5,000")
GENERATIVE = [
    Entry("mnist", "vae", 105.6, PYTORCH_VAE, [f"data.root={MNIST}"], MNIST_FILE,
          metric="test −ELBO (nats/image)", read="test/elbo", sign=-1.0),
    Entry("mnist", "vae", 86.8, IWAE, [f"data.root={MNIST}", "model.binarize=dynamic", "model.latent_dim=50",
                                        "model.net.hidden=[200,200]", "model.iw_samples=500"], MNIST_FILE,
          "vae-iwae", metric="test −log p(x), IW (nats/image)", read="test/nll_iw"),
]
# MovieLens may not be redistributed: its rows fill in where a user has the GroupLens files
# (ml-100k/u.data) under $ARCHBENCH_MOVIELENS (default data/raw/movielens)
MOVIELENS = Path(os.environ.get("ARCHBENCH_MOVIELENS", ROOT / "data" / "raw" / "movielens"))
MOVIELENS_FILE = MOVIELENS / "ml-100k" / "u.data"
ML_RUN = [f"data.root={MOVIELENS / 'ml-100k'}", "paths.data_dir=data/recommend"]
SURPRISE = ("Surprise README, ml-100k, 5-fold cross-validation RMSE: SVD 0.934 (SVD++ 0.919, BaselineOnly "
            "0.944, k-NN 0.980, random 1.518); ours: one seeded 80/10/10 split")
NCF = ("He et al. 2017 (NCF), Figure 4: NeuMF without pre-training on ml-1m, HR@10 0.705 (NDCG@10 0.426), "
       "leave-one-out, 99 negatives; ours: ml-100k")
RECOMMEND = [
    Entry("movielens", "mf", 0.934, SURPRISE, ML_RUN, MOVIELENS_FILE, metric="test RMSE", read="test/rmse"),
    *(Entry("movielens", m, None, "", ML_RUN, MOVIELENS_FILE, metric="test RMSE", read="test/rmse")
      for m in ("gmf", "ncf_mlp", "neumf")),
    Entry("movielens_ranking", "neumf", 0.705, NCF, ML_RUN, MOVIELENS_FILE, metric="test HR@10",
          read="test/hr_at_10"),
    *(Entry("movielens_ranking", m, None, "", ML_RUN, MOVIELENS_FILE, metric="test HR@10", read="test/hr_at_10")
      for m in ("mf", "gmf", "ncf_mlp")),
]
VISION = [
    Entry("cifar10", "resnet", 1 - 0.0875, HE.format(8.75), ["model.net.depth=20"], CIFAR10_FILE, "resnet20"),
    Entry("cifar10", "resnet", 1 - 0.0751, HE.format(7.51), ["model.net.depth=32"], CIFAR10_FILE, "resnet32"),
    Entry("cifar10", "resnet", 1 - 0.0697, HE.format(6.97), ["model.net.depth=56"], CIFAR10_FILE, "resnet56"),
    Entry("cifar10", "lenet5", 0.673, RASBT, [], CIFAR10_FILE),
    Entry("fashion_mnist", "cnn", 0.916, FASHION_README + ": 2-conv CNN", [], FASHION_FILE),
    Entry("fashion_mnist", "mlp", 0.883, FASHION_README + ": MLP", [], FASHION_FILE),
    Entry("fashion_mnist", "resnet", 0.949, FASHION_README + ": ResNet-18 with augmentation (ours: CIFAR "
          "ResNet-20)", ["data.augment_crop=2", "data.augment_flip=true"], FASHION_FILE),
]
ENTRIES = [
    Entry("mnist1d", "logistic", 0.32, MNIST1D_PAPER),
    Entry("mnist1d", "mlp", 0.68, MNIST1D_PAPER),
    Entry("mnist1d", "cnn", 0.94, MNIST1D_PAPER),
    Entry("mnist1d", "gru", 0.91, MNIST1D_PAPER),
    Entry("mnist1d", "lstm"),
    Entry("mnist1d", "transformer"),
    Entry("digits", "cnn"),
    Entry("mnist", "cnn", overrides=[f"data.root={SHARED_DATASETS / 'mnist'}"],
          needs=SHARED_DATASETS / "mnist" / "t10k-images-idx3-ubyte.gz"),
    Entry("tinyshakespeare", "transformer", 1.88, NANOGPT, [f"data.path={SHAKESPEARE}"], SHAKESPEARE),
    Entry("tinyshakespeare", "lstm", None, "", [f"data.path={SHAKESPEARE}"], SHAKESPEARE),
    Entry("sst2", "boe", 0.799, KERAS_BOW, SST2_RUN, SST2 / "train.tsv"),
    Entry("sst2", "cnn", 0.827, KIM, SST2_RUN, SST2 / "train.tsv"),
    Entry("sst2", "lstm", 0.858, GLUE_BILSTM, SST2_RUN, SST2 / "train.tsv"),
    Entry("sst2", "transformer", None, "", SST2_RUN, SST2 / "train.tsv"),
    Entry("multi30k", "seq2seq_gru", 20.6, BENTREVETT + " (test ppl 37.5)", MULTI30K_RUN, MULTI30K / "train.de.gz"),
    Entry("multi30k", "seq2seq_attention", 28.3, BENTREVETT + " (test ppl 25.6)", MULTI30K_RUN,
          MULTI30K / "train.de.gz"),
    Entry("multi30k", "seq2seq_transformer", 36.5, BENTREVETT + " (3+3 layers, d 256, ff 512, 8 heads)",
          MULTI30K_RUN, MULTI30K / "train.de.gz"),
    *VISION,
    *SPEECH,
    *GENERATIVE,
    *RECOMMEND,
]


PIPELINES = (".", "text", "translation", "vision", "speech")


def run_dir(entry: Entry) -> tuple[Path, str]:
    """Where the entry's run folder is: seed 42 of a pipeline stage when the checkout has it, else
    this benchmark's own run."""
    for stage in (Path("results") / pipeline / "train" / entry.key for pipeline in PIPELINES):
        for folder in (stage / "seed42", stage):
            if (ROOT / folder / "metrics.json").is_file():
                return ROOT / folder, f"dvc pipeline, {folder}"
    return ROOT / "results" / "bench" / "published" / entry.key, "bench/published.py"


def pipeline_summary(entry: Entry) -> tuple[dict, dict, str] | None:
    """Seed 42's metrics from a pipeline's committed summary (results/[<pipeline>/]train/<key>.json),
    with the config its recipe composes to now; None where no pipeline trains the pair."""
    from archbench.config import compose

    for path in (Path("results") / pipeline / "train" / f"{entry.key}.json" for pipeline in PIPELINES):
        seeds = json.loads((ROOT / path).read_text()).get("seeds", {}) if (ROOT / path).is_file() else {}
        if "42" in seeds:
            cfg = compose([f"data={entry.data}", f"model={entry.model}", "seed=42", *entry.overrides])
            return seeds["42"], OmegaConf.to_container(cfg, resolve=False), f"dvc pipeline summary, {path} (seed 42)"
    return None


def result(entry: Entry, retrain: bool) -> tuple[dict, dict, str]:
    """The entry's seed-42 metrics, config and origin: a pipeline's run folder, else its committed
    summary, else this benchmark's own run (trained, or only re-tested, here)."""
    directory, origin = run_dir(entry)
    if origin == "bench/published.py":
        summary = pipeline_summary(entry)
        if summary is not None:
            return summary
        train(entry, directory, retrain)
    metrics = json.loads((directory / "metrics.json").read_text())
    return metrics, OmegaConf.to_container(OmegaConf.load(directory / "config.yaml")), origin


def train(entry: Entry, directory: Path, retrain: bool) -> None:
    command = [str(BIN / "archbench-train"), f"data={entry.data}", f"model={entry.model}", "seed=42",
               *entry.overrides, "callbacks.progress_bar=none", "logger.log_model=false",
               "logger.experiment_name=archbench-bench", f"hydra.run.dir={directory}",
               f"resume={'false' if retrain else 'auto'}"]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, env=venv_env(), check=True, stdout=subprocess.DEVNULL)


def row(entry: Entry, metrics: dict, cfg: dict, origin: str) -> dict:
    if entry.language_model:
        ours, test = metrics["val/loss_best"], metrics.get("test/loss")
        steps = int(cfg["data"]["steps_per_epoch"]) * int(metrics["epochs"])
        budget = f"{steps:,} steps × batch {cfg['data']['batch_size']}, context {cfg['data']['block_size']}"
    elif entry.translation:  # the reference decodes greedily; our beam-search BLEU rides along
        ours, test = metrics["test/bleu_greedy"], metrics.get("test/bleu_beam")
        budget = f"{int(metrics['epochs'])} epochs × batch {cfg['data']['batch_size']}"
    elif entry.read:
        ours, test = entry.sign * metrics[entry.read], None
        budget = f"{int(metrics['epochs'])} epochs × batch {cfg['data']['batch_size']}"
    else:
        ours, test = metrics["test/acc"], None
        budget = f"{int(metrics['epochs'])} epochs × batch {cfg['data']['batch_size']}"
    metric = (entry.metric or "best val loss (nats/char)" if entry.language_model else
              "test BLEU (greedy)" if entry.translation else entry.metric or "test accuracy")
    return {"key": entry.key, "data": entry.data, "model": entry.label or entry.model, "metric": metric, "ours": ours, "test_loss": test,
            "reference": entry.reference, "source": entry.source, "seed": cfg["seed"], "budget": budget,
            "train_seconds": metrics.get("train_seconds"), "parameters": metrics.get("parameters"),
            "origin": origin}


def empty_row(entry: Entry, origin: str) -> dict:
    """A reference row whose data is not on this machine: the published figure, nothing of ours."""
    return {"key": entry.key, "data": entry.data, "model": entry.label or entry.model,
            "metric": entry.metric or "test accuracy",
            "ours": None, "test_loss": None, "reference": entry.reference, "source": entry.source,
            "seed": "—", "budget": "—", "train_seconds": None, "parameters": None, "origin": origin}


def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    if "BLEU" in metric or "nats/image" in metric:
        return f"{value:.1f}"
    return f"{100 * value:.1f} %" if "accuracy" in metric else f"{value:.3f}"


def markdown(rows: list[dict], skipped: list[str]) -> str:
    lines = ["# Results beside published references", "",
             "`python bench/published.py` — archbench's default recipe for each pair, seed 42; classifiers "
             "are scored on their held-out test split (model chosen on validation), language models by "
             "their best validation loss in nats per character. MNIST here is the 10,000-image t10k set "
             "split 72/8/20 (no published figure for that split). SST-2 rows are scored on GLUE dev "
             "(872 sentences; GLUE hides the test labels), trained from scratch without pretrained "
             "embeddings; the published figures differ in split or embeddings as their source says. "
             "Multi30k rows (de→en, test2016) come from the translation pipeline (`make repro-translation`): "
             "archbench's regex tokenizer and sacreBLEU 13a on detokenized text, where the reference used "
             "spaCy tokens and torchtext's BLEU on tokens, and far fewer epochs on this CPU. "
             "FSDD rows come from the speech pipeline (`make repro-speech`, the official index 0-4 test split; "
             "the MFCC row from this script). "
             "MNIST VAE rows train on the t10k set's 7,200 training images (the references: 60,000) and "
             "are scored on its 2,000 test images; the −ELBO row on grey values as the PyTorch example, "
             "the IWAE row on binary draws of them (model.binarize=dynamic). MovieLens rows (ml-100k) "
             "fill in where the GroupLens files are ($ARCHBENCH_MOVIELENS/ml-100k/u.data). "
             "CIFAR-10 and Fashion-MNIST rows fill in only where the official files are in data/raw/ "
             "(this machine has neither; nothing is simulated).", "",
             "| data | model | metric | archbench | published | source | seed | budget | train s | from |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | --- | ---: | --- |"]
    for r in rows:
        extra = ("beam 5: {:.1f}" if "BLEU" in r["metric"] else "test {:.3f}").format(r["test_loss"]) \
            if r["test_loss"] is not None else ""
        ours = fmt(r["ours"], r["metric"]) + (f" ({extra})" if extra else "")
        lines.append(f"| {r['data']} | {r['model']} | {r['metric']} | {ours} | {fmt(r['reference'], r['metric'])} | "
                     f"{r['source'] or '—'} | {r['seed']} | {r['budget']} | "
                     f"{'—' if r['train_seconds'] is None else format(r['train_seconds'], '.0f')} | "
                     f"{r['origin']} |")
    lines += ["", "Train seconds are wall time on this 2-core machine, taken from each run's metrics.json "
              "(pipeline stages ran one at a time; the seeds of a pair side by side where its overrides use the joblib launcher, as all SST-2 pairs do)."]
    lines += [f"Skipped: {reason}" for reason in skipped]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="train the non-pipeline entries afresh")
    parser.add_argument("--only", nargs="*", help="refresh only these keys (e.g. tinyshakespeare-transformer); "
                        "the other rows of the existing report are kept")
    args = parser.parse_args(argv)
    rows, skipped = [], []
    for entry in ENTRIES:
        if args.only and entry.key not in args.only:
            continue
        if entry.needs is not None and not entry.needs.is_file():
            needs = entry.needs.relative_to(ROOT) if entry.needs.is_relative_to(ROOT) else entry.needs
            skipped.append(f"{entry.key}: {needs} is missing (put the official files there, then "
                           f"`python bench/published.py --only {entry.key}`)")
            if entry.reference is not None:  # the published figure, ours to fill in
                rows.append(empty_row(entry, f"needs {needs}"))
            continue
        rows.append(row(entry, *result(entry, args.retrain)))
        print(rows[-1]["key"], rows[-1]["ours"], flush=True)
    if args.only:
        rows, skipped = kept_rows(rows), kept_skipped(skipped, args.only)
    write_report("published", {"rows": rows, "skipped": skipped}, markdown(rows, skipped))
    return rows


def kept_rows(fresh: list[dict]) -> list[dict]:
    """The existing report's rows with ``fresh`` ones replaced or added, in ENTRIES order."""
    path = ROOT / "reports" / "benchmarks" / "published.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    by_key = {r["key"]: r for r in old} | {r["key"]: r for r in fresh}
    order = [e.key for e in ENTRIES]
    return sorted(by_key.values(), key=lambda r: order.index(r["key"]) if r["key"] in order else len(order))


def kept_skipped(fresh: list[str], refreshed: list[str]) -> list[str]:
    """The existing report's skip notes of entries not refreshed now, then the fresh ones."""
    path = ROOT / "reports" / "benchmarks" / "published.json"
    old = json.loads(path.read_text()).get("skipped", []) if path.is_file() else []
    return [note for note in old if note.split(":", 1)[0] not in refreshed] + fresh


if __name__ == "__main__":
    main()
