"""Sequence to sequence: the Multi30k and own-file sources on generated files in the official
format, tokenizer and vocabularies, every net's shapes with padding, Transformer causality,
attention masks, greedy = beam search of width 1, BLEU against hand-computed values, a short
corpus overfit to BLEU > 90, and a tiny run through ``train(cfg)`` and ``archbench-predict``."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import call_cli, run_cli

from archbench.data.parallel import detokenize
from archbench.data.prepare import prepare
from archbench.data.tokens import EOS_ID, PAD_ID, SOS_ID, UNK_ID
from archbench.errors import ArchbenchError, DataError
from archbench.nets.decoding import beam_search, greedy_decode
from archbench.nets.seq2seq import AttentionSeq2Seq, GRUSeq2Seq, TransformerSeq2Seq
from archbench.tasks.seq2seq import corpus_bleu

LEXICON = {"ein": "a", "hund": "dog", "mann": "man", "frau": "woman", "kind": "child", "läuft": "runs",
           "springt": "jumps", "sitzt": "sits", "über": "over", "auf": "on", "das": "the",
           "gras": "grass", "wasser": "water", "bank": "bench", "rot": "red", "groß": "big"}
SUBJECTS, VERBS, PLACES = ["hund", "mann", "frau", "kind"], ["läuft", "springt", "sitzt"], ["gras", "wasser", "bank"]


def _pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """German-like captions and their word-by-word English: a corpus a tiny net can learn."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = ["ein", rng.choice(["rot", "groß"]), rng.choice(SUBJECTS), rng.choice(VERBS),
                 rng.choice(["über", "auf"]), "das", rng.choice(PLACES)]
        pairs.append((" ".join(words).capitalize() + ".", " ".join(LEXICON[w] for w in words).capitalize() + "."))
    return pairs


def _multi30k_files(root: Path, pairs: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """``{train,val,test_2016_flickr}.{de,en}.gz``: one sentence per line, gzipped, as the
    dataset's data/task1/raw ships them; returns the files' MD5s."""
    root.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for split, stem in (("train", "train"), ("val", "val"), ("test", "test_2016_flickr")):
        for side, lang in ((0, "de"), (1, "en")):
            path = root / f"{stem}.{lang}.gz"
            path.write_bytes(gzip.compress("".join(p[side] + "\n" for p in pairs[split]).encode()))
            md5[path.name] = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    return md5


def _corpus(root: Path) -> dict[str, str]:
    return _multi30k_files(root, {"train": _pairs(60), "val": _pairs(8, 1), "test": _pairs(8, 2)})


def _data_cfg(name: str, **values) -> dict:
    from archbench.config import compose, to_dict

    return to_dict(compose([f"data={name}", *(f"data.{k}={v}" for k, v in values.items())]).data)


# --- data --------------------------------------------------------------------------------------


def test_multi30k_keeps_the_official_splits_and_vocabularies_come_from_train_only(tmp_path):
    pairs = {"train": _pairs(60), "val": _pairs(8, 1), "test": [("Ein zyzzyva läuft.", "A zyzzyva runs.")]}
    md5 = _multi30k_files(tmp_path / "m30k", pairs)
    cfg = _data_cfg("multi30k", root=tmp_path / "m30k", md5="null")
    cfg["md5"] = md5  # the generated files pinned like the real ones
    meta = prepare(cfg, tmp_path / "a")
    assert meta.splits == {"train": 60, "val": 8, "test": 1} and meta.task == "seq2seq"
    info = meta.extra["translation"]
    assert info["source_vocab"][:4] == info["target_vocab"][:4] == ["<pad>", "<unk>", "<sos>", "<eos>"]
    assert "zyzzyva" not in info["source_vocab"] and "zyzzyva" not in info["target_vocab"]
    test = torch.load(tmp_path / "a" / "test.pt", weights_only=True)
    assert test["x"][0, :4].tolist() == [info["source_vocab"].index("ein"), UNK_ID,
                                        info["source_vocab"].index("läuft"), info["source_vocab"].index(".")]
    assert test["y"][0, 0] == SOS_ID and test["y"][0, test["y_lengths"][0] - 1] == EOS_ID
    assert info["source_lang"] == "de" and info["target_lang"] == "en"
    again = prepare(cfg, tmp_path / "b")  # deterministic: same tensors, same vocabularies
    assert again.checksum == meta.checksum and again.extra["translation"] == info
    references = json.loads((tmp_path / "a" / "pairs.json").read_text())["test"]["reference"]
    assert references == ["A zyzzyva runs."]  # BLEU scores against the raw text, not the ids


def test_multi30k_direction_download_and_checksums(tmp_path):
    md5 = _corpus(tmp_path / "published")
    url = (tmp_path / "published").as_uri() + "/{file}"
    cfg = _data_cfg("multi30k", root=tmp_path / "raw", download="true", md5="null",
                    source_lang="en", target_lang="de")
    cfg.update(md5=md5, url=url)
    meta = prepare(cfg, tmp_path / "out")  # fetched, MD5-checked, en → de
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(md5)
    assert "dog" in meta.extra["translation"]["source_vocab"] and "hund" in meta.extra["translation"]["target_vocab"]
    cfg["md5"] = {**md5, "train.en.gz": "0" * 32}
    with pytest.raises(DataError, match="MD5"):
        prepare(cfg, tmp_path / "bad")
    with pytest.raises(ArchbenchError, match="valid: en, de, fr"):
        prepare({**cfg, "source_lang": "xx"}, tmp_path / "bad")


def test_missing_files_and_empty_lines_are_one_line_exit_2(tmp_path):
    missing = run_cli("archbench-prepare", "multi30k", f"data.root={tmp_path / 'nowhere'}",
                      f"paths.data_dir={tmp_path / 'p'}")
    assert missing.returncode == 2
    [line] = missing.stderr.strip().splitlines()
    assert "train.de.gz" in line and "data.root" in line and "download" in line
    (tmp_path / "pairs.tsv").write_text("ein hund\ta dog\n\ta man\n")
    empty = run_cli("archbench-prepare", "parallel_text", f"data.tsv={tmp_path / 'pairs.tsv'}",
                    f"paths.data_dir={tmp_path / 'p'}")
    assert empty.returncode == 2
    [line] = empty.stderr.strip().splitlines()
    assert "source sentence 2 is empty" in line


def test_parallel_text_reads_a_tsv_or_two_aligned_files(tmp_path):
    pairs = _pairs(40)
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s, _ in pairs))
    (tmp_path / "tgt.txt").write_text("".join(t + "\n" for _, t in pairs))
    from_tsv = prepare(_data_cfg("parallel_text", tsv=tmp_path / "pairs.tsv"), tmp_path / "a")
    from_files = prepare(_data_cfg("parallel_text", source_file=tmp_path / "src.txt",
                                   target_file=tmp_path / "tgt.txt"), tmp_path / "b")
    assert from_tsv.checksum == from_files.checksum and from_tsv.splits == {"train": 32, "val": 4, "test": 4}
    (tmp_path / "short.txt").write_text("".join(t + "\n" for _, t in pairs[:-1]))
    with pytest.raises(DataError, match="aligned"):
        prepare(_data_cfg("parallel_text", source_file=tmp_path / "src.txt",
                          target_file=tmp_path / "short.txt"), tmp_path / "c")


# --- nets and decoding ---------------------------------------------------------------------------

NETS = {
    "gru": lambda: GRUSeq2Seq([12], 30, src_vocab_size=25, embed_dim=8, hidden_size=16, dropout=0.0),
    "attention": lambda: AttentionSeq2Seq([12], 30, src_vocab_size=25, embed_dim=8, hidden_size=16,
                                          attention_size=8, dropout=0.0),
    "transformer": lambda: TransformerSeq2Seq([12], 30, src_vocab_size=25, d_model=16, n_heads=2,
                                              encoder_layers=1, decoder_layers=2, ff_dim=32, dropout=0.0),
}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    src = torch.randint(4, 25, (3, 7))
    src[0, 5:], src[1, 3:] = PAD_ID, PAD_ID
    tgt = torch.randint(4, 30, (3, 6))
    tgt[:, 0] = SOS_ID
    tgt[2, 4:] = PAD_ID
    return src, tgt


@pytest.mark.parametrize("name", NETS)
def test_every_net_maps_padded_pairs_to_logits_and_ignores_padding(name):
    torch.manual_seed(0)
    net = NETS[name]().eval()
    src, tgt = _batch()
    logits = net(src, tgt)
    assert logits.shape == (3, 6, 30) and torch.isfinite(logits).all()
    padded = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], dim=1)  # more source padding
    torch.testing.assert_close(net(padded, tgt), logits, atol=1e-5, rtol=1e-5)
    assert net(src, tgt[:, :4]).shape == (3, 4, 30)
    if name != "transformer":  # scheduled sampling: the decoder may read its own predictions
        assert net(src, tgt, teacher_forcing=0.0).shape == (3, 6, 30)


def test_transformer_decoder_is_causal():
    torch.manual_seed(0)
    net = NETS["transformer"]().eval()
    src, tgt = _batch()
    changed = tgt.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 26 + 4
    before, after = net(src, tgt), net(src, changed)
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3:], before[:, 3:])


@pytest.mark.parametrize("pre_norm", [True, False])
def test_transformer_step_by_step_decoding_equals_the_full_decoder(pre_norm):
    torch.manual_seed(0)
    net = TransformerSeq2Seq([12], 30, src_vocab_size=25, d_model=16, n_heads=2, encoder_layers=1,
                             decoder_layers=2, ff_dim=32, dropout=0.0, pre_norm=pre_norm).eval()
    src, tgt = _batch()
    full, state, steps = net(src, tgt), net.encode(src), []
    for t in range(tgt.shape[1]):  # the cached pre-norm path attends over cached layer inputs
        logits, state = net.step(state, tgt[:, t])
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_attention_weights_sum_to_one_and_are_zero_on_padding():
    torch.manual_seed(0)
    net = NETS["attention"]().eval()
    src, _ = _batch()
    _, weights = greedy_decode(net, src, max_len=5, keep_attention=True)
    assert weights.shape[0] == 3 and weights.shape[2] == 7
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[:2]))
    assert (weights[0, :, 5:] == 0).all() and (weights[1, :, 3:] == 0).all() and (weights[2] > 0).all()


@pytest.mark.parametrize("name", NETS)
def test_beam_search_of_width_one_is_greedy_search(name):
    torch.manual_seed(1)
    net = NETS[name]().eval()
    src, _ = _batch()
    greedy, _ = greedy_decode(net, src, max_len=9)
    torch.testing.assert_close(beam_search(net, src, beam_size=1, max_len=9), greedy)
    wide = beam_search(net, src, beam_size=4, max_len=9)
    assert wide.shape[0] == 3 and wide.shape[1] <= 9
    for row in wide.tolist():  # after its <eos> a hypothesis is only padding
        if EOS_ID in row:
            assert set(row[row.index(EOS_ID) + 1 :]) <= {PAD_ID}


# --- BLEU ------------------------------------------------------------------------------------------


def test_bleu_matches_hand_computed_corpus_values():
    # "the cat is on the red mat" vs "the cat is on the mat": clipped n-gram precisions 6/7, 4/6,
    # 3/5, 2/4, hypothesis longer than the reference (no brevity penalty)
    assert corpus_bleu(["the cat is on the red mat"], ["the cat is on the mat"]) == pytest.approx(
        100 * (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25, abs=1e-4)
    # every n-gram matches, 5 words for 6: brevity penalty exp(1 - 6/5)
    assert corpus_bleu(["the cat is on the"], ["the cat is on the mat"]) == pytest.approx(
        100 * 2.718281828 ** (1 - 6 / 5), abs=1e-4)
    # corpus level: counts summed over sentences (lengths 12 and 12), not sentence scores averaged
    assert corpus_bleu(["the cat is on the red mat", "the cat is on the"],
                       ["the cat is on the mat", "the cat is on the mat"]) == pytest.approx(
        100 * (11 / 12 * 8 / 10 * 6 / 8 * 4 / 6) ** 0.25, abs=1e-4)
    # 13a tokenization splits the final full stop from the word, as sacreBLEU does
    assert corpus_bleu(["a dog runs on the grass."], ["a dog runs on the grass ."]) == pytest.approx(100.0)
    assert detokenize(["a", "dog", "'s", "ball", "(", "red", ")", "."]) == "a dog's ball (red)."


def test_a_short_corpus_overfits_to_bleu_above_90():
    from archbench.data.parallel import parallel_arrays
    from archbench.tasks.seq2seq import Translator

    pairs = _pairs(24)
    arrays, info = parallel_arrays({"min_freq": 1, "max_len": 12}, {"train": tuple(map(list, zip(*pairs, strict=True)))})
    src, tgt = torch.from_numpy(arrays["train"]["x"]), torch.from_numpy(arrays["train"]["y"])
    torch.manual_seed(0)
    net = AttentionSeq2Seq([12], info["target_vocab_size"], src_vocab_size=info["source_vocab_size"],
                           embed_dim=32, hidden_size=64, attention_size=32, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(120):
        logits = net(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1),
                                                 ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    translator = Translator(net, info["source_vocab"], info["target_vocab"], info["tokenizer"], 14, beam_size=3)
    sources, references = [p[0] for p in pairs], [p[1].lower() for p in pairs]
    assert corpus_bleu(translator.translate(sources, beam_size=1), references) > 90
    assert corpus_bleu(translator.translate(sources), references) > 90


# --- a tiny run, the logged model, the CLI ----------------------------------------------------------


def test_tiny_translation_run_logs_a_model_that_translates_raw_text(make_cfg, tmp_path):
    from archbench.train import train

    md5 = _corpus(tmp_path / "m30k")
    cfg = make_cfg("data=multi30k", "model=seq2seq_attention", "logger.log_model=true", f"data.root={tmp_path / 'm30k'}", "data.md5=null",
                   "model.seq2seq_net.embed_dim=16", "model.seq2seq_net.hidden_size=16",
                   "model.seq2seq_net.attention_size=16", "data.batch_size=16", "decode.beam_size=2")
    assert md5
    metrics = train(cfg)
    for key in ("test/bleu", "test/bleu_greedy", "test/bleu_beam", "test/ppl", "test/loss"):
        assert key in metrics
    run_dir = tmp_path / "run"
    rows = (run_dir / "translations.tsv").read_text().splitlines()
    assert rows[0] == "source\treference\tgreedy\tbeam" and len(rows) == 9
    assert (run_dir / "attention_0.png").is_file()
    from archbench.report.compare import write_report

    write_report(tmp_path, tmp_path / "reports")  # the run's section of the comparison report
    report = (tmp_path / "reports" / "comparison.md").read_text()
    assert "## Translation" in report and "| multi30k | seq2seq_attention | 1 |" in report
    assert "| source | reference | greedy | beam |" in report
    run = json.loads((run_dir / "run.json").read_text())
    store = ["--tracking-uri", str(cfg.logger.tracking_uri)]
    uri = ["--model-uri", run["model_uri"]]
    result = call_cli("archbench-predict", *uri, *store, "--text", "Ein Hund läuft über das Gras.",
                     "--text", "zyzzyva qwerty", "--beam-size", "1")  # unknown words → <unk>, still translated
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "index,source,translation" and len(lines) == 3
    assert "longer than" not in result.stderr  # no sentence over max_len: that warning stays away
    assert "read as <unk> (" in result.stderr and "no word of index 1 is known" in result.stderr
    long = call_cli("archbench-predict", *uri, *store, "--text", "ein hund " * 60, "--beam-size", "1")
    assert long.returncode == 0 and len(long.stdout.strip().splitlines()) == 2
    assert "warning: 1 sentence(s) longer than the " in long.stderr and "(index 0)" in long.stderr  # was silent
    empty = call_cli("archbench-predict", *uri, *store, "--text", "ein hund", "--text", " ")
    assert empty.returncode == 2 and empty.stdout == ""
    [line] = empty.stderr.strip().splitlines()
    assert "--text number 2 is empty" in line
