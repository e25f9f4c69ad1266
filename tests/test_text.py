"""Text classification: tokenizer and vocabulary, the SST-2 / IMDB / own-file sources on generated
files in the official layouts, every text net's shapes and padding invariance, and a tiny run
through ``train(cfg)`` and ``archbench-predict --text``."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import call_cli, repickled, run_cli

from archbench.data.prepare import prepare, prepare_config
from archbench.data.tokens import PAD_ID, UNK_ID, build_vocab, encode, tokenize
from archbench.errors import ArchbenchError, ConfigError, DataError

POSITIVE = ["a charming and often affecting journey", "it 's a gorgeous , witty , seductive movie",
            "the best film of the year", "an utterly delightful , funny comedy", "smart and moving"]
NEGATIVE = ["the plot is nothing but boilerplate", "does n't work at all", "a dull , tedious mess",
            "the worst movie of the year", "boring and badly acted"]


def _sst2_files(root: Path, copies: int = 4) -> Path:
    """train.tsv / dev.tsv exactly as GLUE ships them (header, train rows end with a space)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    train = "".join(f"{t} \t{y}\n" for _ in range(copies) for t, y in rows)
    (root / "train.tsv").write_text("sentence\tlabel\n" + train)
    (root / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return root


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _data_cfg(name: str, **values) -> dict:
    from archbench.config import compose, to_dict

    overrides = [f"data={name}", *(f"data.{k}={v}" for k, v in values.items())]
    return to_dict(compose(overrides).data)


# --- tokenizer and vocabulary ---------------------------------------------------------------


def test_tokenizer_keeps_punctuation_and_splits_negations_like_the_treebank():
    assert tokenize("I don't like it's well-made ending!! <br />Can't") == [
        "i", "do", "n't", "like", "it", "'s", "well-made", "ending", "!", "!", "ca", "n't"]
    assert tokenize("does n't") == tokenize("doesn't") == ["does", "n't"]
    assert tokenize("Café", lowercase=False) == ["Café"]


def test_vocabulary_comes_from_the_training_split_only(tmp_path):
    root = _sst2_files(tmp_path / "sst2")
    (root / "dev.tsv").write_text("sentence\tlabel\nzyzzyva is splendid\t1\nquux fails\t0\n")
    cfg = _data_cfg("sst2", root=root, md5="null", val_split="phrases", val_fraction=0.2)
    prepare(cfg, tmp_path / "out")
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert vocab[:2] == ["<pad>", "<unk>"] and "zyzzyva" not in vocab and "charming" in vocab
    test = torch.load(tmp_path / "out" / "test.pt", weights_only=True)
    assert test["x"][0, 0] == UNK_ID and test["lengths"].tolist() == [3, 2]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["extra"]["text"]["unk_share"]["test"] == pytest.approx(4 / 5)  # all but "is"
    assert meta["extra"]["text"]["vocab_size"] == len(vocab)


def test_min_freq_max_size_truncation_and_unknown_words():
    tokens = [["a", "b", "a", "c"], ["a", "b", "d"]]
    assert build_vocab(tokens) == ["<pad>", "<unk>", "a", "b", "c", "d"]
    assert build_vocab(tokens, min_freq=2) == ["<pad>", "<unk>", "a", "b"]
    vocab = build_vocab(tokens, max_size=3)
    assert vocab == ["<pad>", "<unk>", "a"]
    ids, lengths = encode([["a", "z", "a"], []], vocab, max_len=2)
    assert ids.tolist() == [[2, UNK_ID], [UNK_ID, PAD_ID]] and lengths.tolist() == [2, 1]
    ids, _ = encode([["a", "z", "q"]], vocab, max_len=2, truncation="start")
    assert ids.tolist() == [[UNK_ID, UNK_ID]]


def test_preparation_is_deterministic(tmp_path):
    cfg = prepare_config(_data_cfg("sst2", root=_sst2_files(tmp_path / "sst2"), md5="null",
                                   val_split="phrases"))
    first, second = prepare(cfg, tmp_path / "a"), prepare(cfg, tmp_path / "b")
    assert first.checksum == second.checksum and first.kind == "tokens"
    assert (tmp_path / "a" / "vocab.json").read_bytes() == (tmp_path / "b" / "vocab.json").read_bytes()


# --- sources ------------------------------------------------------------------------------------


def test_sst2_downloads_glues_zip_and_checks_its_md5(tmp_path):
    files = _sst2_files(tmp_path / "files")
    archive = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(archive, "w") as zipped:  # GLUE's layout: SST-2/{train,dev,test}.tsv
        for name in ("train.tsv", "dev.tsv"):
            zipped.write(files / name, f"SST-2/{name}")
        zipped.writestr("SST-2/test.tsv", "index\tsentence\n0\tunlabelled\n")
    md5s = f"{{train.tsv: {_md5(files / 'train.tsv')}, dev.tsv: {_md5(files / 'dev.tsv')}}}"
    cfg = _data_cfg("sst2", root=tmp_path / "raw", download="true", url=archive.as_uri(),
                    archive_md5=_md5(archive), md5=md5s, val_split="phrases")
    meta = prepare(cfg, tmp_path / "out")
    assert meta.splits["test"] == 10 and (tmp_path / "raw" / "test.tsv").is_file()
    bad = _data_cfg("sst2", root=tmp_path / "raw2", download="true", url=archive.as_uri(),
                    archive_md5="0" * 32)
    with pytest.raises(DataError, match="not the official"):
        prepare(bad, tmp_path / "out2")


def test_sst2_from_a_shared_folder_is_the_default_dataset_not_a_variant(tmp_path):
    from archbench.data.prepare import identity

    default, shared = _data_cfg("sst2"), _data_cfg("sst2", root=tmp_path)
    assert identity(prepare_config(default)) == identity(prepare_config(shared))
    unpinned = _data_cfg("sst2", root=tmp_path, md5="null")
    assert identity(prepare_config(default)) != identity(prepare_config(unpinned))


def test_sst2_sentence_validation_holds_out_whole_sentences_and_every_phrase_inside_them(tmp_path):
    from archbench.data.sources.text_classification import sentence_validation

    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    phrases = [(" ".join(t.split()[i:i + 2]), y) for t, y in rows for i in range(0, len(t.split()) - 1, 2)]
    texts, labels = [t for t, _ in rows + phrases], torch.tensor([y for _, y in rows + phrases]).numpy()
    (train_x, train_y), (val_x, val_y), dropped = sentence_validation(texts, labels, 4, seed=42)
    assert sorted(val_y.tolist()) == [0, 0, 1, 1] and set(val_x) <= {t for t, _ in rows}  # stratified
    def spans(text: str) -> set[str]:
        words = text.split()
        return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}

    inside_val = set().union(*map(spans, val_x))
    inside_train = set().union(*(spans(t) for t, _ in rows if t not in val_x))
    kept_inside = inside_val & set(train_x)  # only phrases that training sentences hold too
    assert dropped > 0 and kept_inside and kept_inside <= inside_train and not set(val_x) & set(train_x)
    assert len(train_x) + len(val_x) + dropped == len(texts)
    assert sentence_validation(texts, labels, 4, seed=42)[1][0] == val_x  # seeded
    assert sentence_validation(texts, labels, 4, seed=7)[1][0] != val_x
    with pytest.raises(ArchbenchError, match="choose 1..9"):
        sentence_validation(texts, labels, 10, seed=42)
    root = _sst2_files(tmp_path / "sst2", copies=1)
    meta = prepare(_data_cfg("sst2", root=root, md5="null", val_split="sentences", val_sentences=4),
                   tmp_path / "out")
    assert meta.splits["val"] == 4 and meta.splits["train"] == 6
    with pytest.raises(ArchbenchError, match="phrases or sentences"):
        prepare(_data_cfg("sst2", root=root, md5="null", val_split="trees"), tmp_path / "bad")


def test_imdb_reads_the_published_tree_and_its_tarball(tmp_path):
    tree = tmp_path / "build" / "aclImdb"
    for split in ("train", "test"):
        for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = tree / split / label
            folder.mkdir(parents=True)
            for i, text in enumerate(texts):
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(text + "<br /><br />Really.")
    (tree / "train" / "unsup").mkdir()
    (tree / "train" / "unsup" / "0_0.txt").write_text("unlabelled, ignored")
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="aclImdb")
    cfg = _data_cfg("imdb", root=tmp_path / "raw", download="true", url=archive.as_uri(),
                    archive_md5=_md5(archive), min_freq=1, val_fraction=0.2)
    meta = prepare(cfg, tmp_path / "out")
    assert meta.class_names == ["neg", "pos"] and meta.splits == {"train": 8, "val": 2, "test": 10}
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert "br" not in vocab and "really" in vocab


def test_download_settings_reach_the_source_through_archbench_prepare(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be: that is the question.\n" * 40)
    result = run_cli("archbench-prepare", "tinyshakespeare", f"data.path={tmp_path / 'raw' / 'input.txt'}",
                     "data.download=true", f"data.url={corpus.as_uri()}", f"paths.data_dir={tmp_path / 'p'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "raw" / "input.txt").read_bytes() == corpus.read_bytes()


def test_own_texts_from_a_csv_and_from_class_folders(tmp_path, capsys):
    import pandas as pd

    rows = [{"review": t, "stars": "good"} for t in POSITIVE] + [{"review": t, "stars": "bad"} for t in NEGATIVE]
    pd.DataFrame(rows * 2).to_csv(tmp_path / "reviews.csv", index=False)
    cfg = _data_cfg("text_files", path=tmp_path / "reviews.csv", text_column="review", label_column="stars")
    meta = prepare(cfg, tmp_path / "csv")
    assert meta.class_names == ["bad", "good"] and sum(meta.splits.values()) == 20
    for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)):
        (tmp_path / "folders" / label).mkdir(parents=True)
        for i, text in enumerate(texts * 2):
            (tmp_path / "folders" / label / f"{i}.txt").write_text(text)
    meta = prepare(_data_cfg("text_files", path=tmp_path / "folders"), tmp_path / "dirs")
    assert meta.class_names == ["neg", "pos"] and sum(meta.splits.values()) == 20
    # a class's sub-folders are read; a Mac's ._* copies (binary: they were read as texts) and
    # __MACOSX/ (was a third class) are not; other files are counted in a warning
    (tmp_path / "folders" / "pos" / "2026").mkdir()
    (tmp_path / "folders" / "pos" / "9.txt").rename(tmp_path / "folders" / "pos" / "2026" / "9.txt")
    (tmp_path / "folders" / "pos" / "._0.txt").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
    (tmp_path / "folders" / "__MACOSX" / "pos").mkdir(parents=True)
    (tmp_path / "folders" / "__MACOSX" / "pos" / "._0.txt").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "folders" / "neg" / "notes.md").write_text("labelled by hand")
    again = prepare(_data_cfg("text_files", path=tmp_path / "folders"), tmp_path / "nested")
    # 20: the nested text in (19 without it), the binary copy out (21 with it)
    assert again.class_names == ["neg", "pos"] and sum(again.splits.values()) == 20
    # train/ and test/ trees of class folders, as IMDB's (before: two classes, "test" and "train")
    for text in (tmp_path / "folders").glob("[pn]*/**/[0-9].txt"):
        folder = tmp_path / "split" / ("train" if int(text.stem) < 7 else "test") / text.relative_to(tmp_path / "folders").parts[0]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(text, folder / text.name)
    split = prepare(_data_cfg("text_files", path=tmp_path / "split"), tmp_path / "given")
    assert split.class_names == ["neg", "pos"] and split.splits["test"] == 6  # 3 a class, as given
    latin = tmp_path / "split" / "train" / "pos" / "café.txt"
    latin.write_bytes("un très beau film".encode("latin-1"))  # before: read as "un tr\ufffds beau film"
    with pytest.raises(DataError, match=r"café.txt is not UTF-8 text \(byte 5: invalid continuation byte\)"):
        prepare(_data_cfg("text_files", path=tmp_path / "split"), tmp_path / "latin")
    latin.unlink()
    for text in (tmp_path / "split" / "test").rglob("*.txt"):
        text.unlink()
    with pytest.raises(DataError, match=r"split/test holds no \.txt files in its class folders \(neg, pos\)"):
        prepare(_data_cfg("text_files", path=tmp_path / "split"), tmp_path / "empty")  # was an IndexError
    assert "skipped files that are not .txt: 1 .md in neg" in capsys.readouterr().out


def test_a_byte_order_mark_from_windows_tools_is_not_part_of_the_first_word(tmp_path):
    """Notepad and Excel's "CSV UTF-8" start a file with U+FEFF; before, it stuck to the first word
    of a class folder's text and of archbench-predict's .txt lines ("\ufeffa" instead of "a")."""
    from archbench.cli.predict import _load_texts
    from archbench.data.sources.text_classification import _read_class_folders

    bom = "\ufeff"
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "1.txt").write_text(f"{bom}a fine film", encoding="utf-8")
    (tmp_path / "pos" / "2.txt").write_text("a fine film", encoding="utf-8")
    texts, _ = _read_class_folders(tmp_path, ["pos"])
    assert texts == ["a fine film", "a fine film"]
    (tmp_path / "new.txt").write_text(f"{bom}a fine film\r\na dull mess\r\n", encoding="utf-8")
    assert _load_texts(tmp_path / "new.txt", []) == ["a fine film", "a dull mess"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(bom + "to be or not to be\n" * 50, encoding="utf-8")
    from archbench.data.sources.text import text_file

    assert bom not in text_file({"path": str(corpus), "block_size": 8}).class_names  # the character vocabulary


@pytest.mark.parametrize("problem", ["missing", "one_class", "empty"])
def test_bad_text_data_is_one_line_and_exit_2(tmp_path, problem):
    table = tmp_path / "t.csv"
    if problem == "one_class":
        table.write_text("text,label\n" + "".join(f'"{t}",pos\n' for t in POSITIVE))
    elif problem == "empty":
        table.write_text("text,label\n")
    path = table if problem != "missing" else tmp_path / "absent.csv"
    result = run_cli("archbench-prepare", "text_files", f"data.path={path}",
                     f"paths.data_dir={tmp_path / 'prepared'}")
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert {"missing": "not found", "one_class": "nothing to classify", "empty": "empty corpus"}[problem] in line


def test_missing_sst2_says_where_to_put_it(tmp_path):
    result = run_cli("archbench-prepare", "sst2", f"data.root={tmp_path}", f"paths.data_dir={tmp_path / 'p'}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "train.tsv and dev.tsv" in line and str(tmp_path) in line and "download" in line


# --- nets ----------------------------------------------------------------------------------------


TEXT_MODELS = ["boe", "cnn", "rnn", "lstm", "gru", "transformer"]
VARIANTS = {"lstm": {"bidirectional": True, "embed_init_std": 0.1, "embed_dropout": 0.3},
            "gru": {"pooling": "max"}, "rnn": {"pooling": "mean"}, "cnn": {"embed_init_std": 0.1}}
NET_CASES = [(model, VARIANTS.get(model, {})) for model in TEXT_MODELS] + [
    ("transformer", {"pooling": "max", "head_dropout": 0.5, "embed_dropout": 0.3}), ("transformer", {"pooling": "cls"}),
    ("transformer", {"positions": "alibi"}), ("transformer", {"layer_scale": 0.1}),
    ("transformer", {"pooling": "attention"})]


@pytest.mark.parametrize(("model", "variant"), NET_CASES, ids=[f"{m}-{'-'.join(map(str, v.values())) or 'default'}"
                                                               for m, v in NET_CASES])
def test_text_nets_map_ids_to_class_scores_whatever_the_padding(model, variant):
    torch.manual_seed(0)
    from archbench.config import compose
    from archbench.tasks.base import instantiate_net

    text_net = dict(compose([f"model={model}", "data=sst2"]).model.text_net) | variant
    net = instantiate_net(text_net, model, input_shape=[24], num_classes=3, vocab_size=50).eval()
    lengths = [5, 2, 9]
    ids = torch.zeros(3, 12, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(2, 50, (length,))
    with torch.no_grad():
        scores = net(ids)
        padded = net(torch.nn.functional.pad(ids, (0, 12)))  # 12 more <pad> per text
        alone = torch.cat([net(ids[i : i + 1, : lengths[i]]) for i in range(3)])  # no padding at all
    assert scores.shape == (3, 3)
    torch.testing.assert_close(padded, scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, scores, atol=1e-5, rtol=1e-5)


def test_attention_pooling_weighs_the_real_tokens_and_old_pickles_still_run():
    """pooling=attention: with a zero score layer every real token weighs the same (= masked mean);
    a net pickled before the option existed loads and predicts as before."""
    import pickle

    torch.manual_seed(0)
    attention, mean = _text_transformer(pooling="attention"), _text_transformer(pooling="mean")
    mean.load_state_dict({k: v for k, v in attention.state_dict().items() if not k.startswith("pool_score")})
    torch.nn.init.zeros_(attention.pool_score.weight)
    torch.nn.init.zeros_(attention.pool_score.bias)
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]])
    attention.eval(), mean.eval()
    torch.testing.assert_close(attention(ids), mean(ids))
    del mean._modules["pool_score"]  # as pickled before attention pooling
    old = pickle.loads(pickle.dumps(mean))
    assert old.pool_score is None
    torch.testing.assert_close(old(ids), attention(ids))


def _text_rnn(**options):
    from archbench.nets.recurrent import TextRNN

    return TextRNN([12], 2, vocab_size=50, **options)


def _text_transformer(**options):
    from archbench.nets.transformer import TextTransformer

    return TextTransformer([12], 2, vocab_size=50, d_model=16, dropout=0.0, **options)


def test_order_blind_transformer_scores_a_reordered_sentence_alike():
    """model.text_net.positions=none (the bag-of-words ablation): no position signal, so a sentence
    and its reversal get the same scores; with learned positions they do not."""
    torch.manual_seed(0)
    ids = torch.randint(2, 50, (3, 12))
    for positions, same in (("none", True), ("learned", False)):
        net = _text_transformer(positions=positions).eval()
        with torch.no_grad():
            if positions == "learned":
                torch.nn.init.normal_(net.encoder.pos, std=1.0)
            forward, reversed_ = net(ids), net(ids.flip(1))
        assert torch.allclose(forward, reversed_, atol=1e-5) is same, positions
    with pytest.raises(ConfigError, match="valid: learned, sinusoidal, none, alibi"):
        _text_transformer(positions="relative")


def test_alibi_transformer_sees_distances_between_words():
    """positions=alibi biases each head's scores by −slope·|i − j|: no position vectors, yet word
    order counts through distances: a shuffle changes the scores, a reversal (same distances) does
    not; a causal ALiBi decoder never reads the future."""
    from archbench.nets.transformer import TransformerEncoder, alibi_bias, alibi_slopes

    torch.manual_seed(0)
    ids = torch.randint(2, 50, (3, 12))
    net = _text_transformer(positions="alibi", n_heads=2).eval()
    with torch.no_grad():
        scores, reversed_, shuffled = net(ids), net(ids.flip(1)), net(ids[:, torch.randperm(12)])
    torch.testing.assert_close(reversed_, scores, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(shuffled, scores, atol=1e-3)
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([0.25, 0.0625, 0.015625, 0.00390625]))
    assert alibi_bias(alibi_slopes(2), 3, causal=False)[0].tolist() == [[0, -1 / 16, -2 / 16],
                                                                        [-1 / 16, 0, -1 / 16],
                                                                        [-2 / 16, -1 / 16, 0]]
    decoder = TransformerEncoder(8, 16, 1, 2, 2, 0.0, causal=True, positions="alibi", pre_norm=True).eval()
    h = torch.randn(1, 8, 16)
    changed = h.clone()
    changed[:, 5:] = torch.randn(1, 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(decoder(changed)[:, :5], decoder(h)[:, :5])


def test_layer_scale_starts_each_block_at_its_start_value_and_learns_it():
    """model.text_net.layer_scale=s (LayerScale): every residual branch is multiplied by a learned
    per-channel factor started at s, so s = 0 makes the encoder the identity (the bag of normalised
    word vectors); the factors get gradients; post-norm blocks refuse it in one line; a block
    pickled before the option existed still runs as it did."""
    from archbench.nets.transformer import Block, TransformerEncoder

    torch.manual_seed(0)
    encoder = TransformerEncoder(12, 16, 2, 2, 2, 0.0, causal=False, positions="none", pre_norm=True,
                                 layer_scale=0.0)
    h = torch.randn(3, 12, 16)
    torch.testing.assert_close(encoder(h), encoder.final_norm(h))
    encoder(h).square().sum().backward()
    assert all(block.scale_attn.gamma.grad.abs().sum() > 0 for block in encoder.blocks)
    assert _text_transformer(layer_scale=0.1).encoder.blocks[0].scale_ff.gamma.tolist() == pytest.approx([0.1] * 16)
    with pytest.raises(ConfigError, match="set pre_norm=true"):
        _text_transformer(layer_scale=0.1, pre_norm=False)
    block = Block(16, 2, 2, 0.0, False, pre_norm=True).eval()
    del block._modules["scale_attn"], block._modules["scale_ff"]  # as pickled before the option
    loaded = repickled(block)
    reference = Block(16, 2, 2, 0.0, False, pre_norm=True).eval()
    reference.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(h), reference(h), rtol=0, atol=0)
    assert isinstance(loaded.scale_attn, torch.nn.Identity) and isinstance(loaded.scale_ff, torch.nn.Identity)


@pytest.mark.parametrize(("build", "key"), [(_text_rnn, "embed_dropout"), (_text_transformer, "head_dropout"),
                                             (_text_transformer, "embed_dropout")])
def test_text_net_dropout_options_act_in_training_only(build, key):
    """model.text_net.embed_dropout (recurrent, transformer) and head_dropout (transformer) drop features while
    training; evaluation (and so the padding invariance above) is untouched; 1.0 fails in one line."""
    torch.manual_seed(0)
    net = build(**{key: 0.5})
    ids = torch.randint(2, 50, (4, 12))
    net.train()
    assert not torch.equal(net(ids), net(ids))
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(ids), net(ids))
    plain = build().train()  # no dropout anywhere: training passes agree
    assert torch.equal(plain(ids), plain(ids))
    for bad in (1.0, -0.1, "abc"):
        with pytest.raises(ConfigError, match=key):
            build(**{key: bad})


def test_word_embeddings_start_at_the_configured_scale_with_a_zero_pad_row():
    from archbench.nets.common import PAD_ID, word_embedding

    torch.manual_seed(0)
    small, default = word_embedding(5000, 64, 0.1), word_embedding(5000, 64)
    assert abs(small.weight[1:].std().item() - 0.1) < 0.005 and abs(default.weight[1:].std().item() - 1) < 0.05
    assert not small.weight[PAD_ID].any() and not default.weight[PAD_ID].any()
    assert small.padding_idx == default.padding_idx == PAD_ID  # its gradient stays zero too


def test_models_without_a_text_form_are_refused_with_the_ones_that_have_it(make_cfg, tmp_path):
    from archbench.train import train

    root = _sst2_files(tmp_path / "sst2")
    with pytest.raises(ArchbenchError, match="has no 'text_net'.*boe, cnn, gru, lstm, rnn, transformer"):
        train(make_cfg("data=sst2", "model=mlp", f"data.root={root}", "data.md5=null",
                       "data.val_split=phrases"))


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_text_run_logs_a_model_that_classifies_raw_text(make_cfg, tmp_path):
    from archbench.train import train

    root = _sst2_files(tmp_path / "sst2", copies=8)
    cfg = make_cfg("data=sst2", "model=cnn", "logger.log_model=true", f"data.root={root}", "data.md5=null",
                   "data.val_split=sentences", "data.val_sentences=2", "trainer.max_epochs=2",
                   "model.text_net.embed_dim=16", "model.text_net.maps=8", "data.batch_size=16",
                   "+optimizer.compile=false")  # the recipe's compiled update: tests/test_speed.py
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1 and "test/f1" in metrics
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (tmp_path / "run" / "confusion.png").is_file()
    store = ["--tracking-uri", str(cfg.logger.tracking_uri)]
    uri = ["--model-uri", run["model_uri"]]
    result = run_cli("archbench-predict", *uri, *store, "--text", "a gorgeous , witty movie",
                     "--text", "zyzzyva qwerty")  # every word unknown → all <unk>, still classified
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "index,label,probability,top,text" and len(lines) == 3
    assert lines[1].split(",")[1] in ("negative", "positive") and lines[1].endswith('"a gorgeous , witty movie"')
    # said, not silent: the unknown words and the text that rests on <unk> alone
    assert ("words are not in the model's training vocabulary and read as <unk> (" in result.stderr
            and "zyzzyva, qwerty" in result.stderr and "no word of index 1 is known" in result.stderr)
    (tmp_path / "in.txt").write_text("boring and badly acted\nsmart and moving\n")
    from_file = call_cli("archbench-predict", str(tmp_path / "in.txt"), *uri, *store)
    assert from_file.returncode == 0 and len(from_file.stdout.strip().splitlines()) == 3
    (tmp_path / "gap.txt").write_text("smart\n\nboring\n")
    empty = call_cli("archbench-predict", str(tmp_path / "gap.txt"), *uri, *store)
    assert empty.returncode == 2 and empty.stdout == ""
    [line] = empty.stderr.strip().splitlines()
    assert "line 2" in line and "empty" in line
    punctuation = call_cli("archbench-predict", *uri, *store, "--text", "  ")
    assert punctuation.returncode == 2 and "empty" in punctuation.stderr
    # a column of a table (before: "a text model reads a .txt file"), labelled as the same lines are
    (tmp_path / "in.csv").write_text('id;review\n1;boring and badly acted\n2;"smart; and moving"\n')
    from_table = call_cli("archbench-predict", str(tmp_path / "in.csv"), "--column", "review", *uri, *store)
    assert from_table.returncode == 0, from_table.stderr
    (tmp_path / "same.txt").write_text("boring and badly acted\nsmart; and moving\n")
    assert from_table.stdout == call_cli("archbench-predict", str(tmp_path / "same.txt"), *uri, *store).stdout
    no_column = call_cli("archbench-predict", str(tmp_path / "in.csv"), *uri, *store)
    assert no_column.returncode == 2 and no_column.stderr.strip() == (
        f"archbench-predict: error: {tmp_path / 'in.csv'}: no column 'text' (--column NAME names the text "
        f"column); columns: id, review")
    # the raw-text pyfunc for `mlflow models serve` labels texts as archbench-predict does
    import mlflow
    import pandas as pd

    exported = call_cli("archbench-export", *uri, *store, "--format", "pyfunc", "--output", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    served = mlflow.pyfunc.load_model(str(tmp_path / "export" / "pyfunc")).predict(
        pd.DataFrame({"text": ["boring and badly acted", "smart and moving"]}))  # in.txt's lines
    rows = [line.split(",") for line in from_file.stdout.strip().splitlines()[1:]]
    assert served["label"].tolist() == [r[1] for r in rows]
    assert [f"{p:.4f}" for p in served["probability"]] == [r[2] for r in rows]


def test_predict_needs_an_input_or_text():
    result = run_cli("archbench-predict", "--registered", "sst2-cnn")
    assert result.returncode == 2 and "--text" in result.stderr



def test_length_buckets_cover_the_split_once_per_epoch_with_similar_lengths():
    from archbench.data.datamodule import LengthBucketSampler

    lengths = torch.randint(1, 60, (1000,), generator=torch.Generator().manual_seed(0))
    sampler = LengthBucketSampler(lengths, batch_size=32, bucket=10, seed=42)
    first = list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(1000)) and len(first) == len(sampler)
    spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in first]).mean()
    shuffled = torch.tensor([float(lengths[b].max() - lengths[b].min())
                             for b in torch.randperm(1000).split(32)]).mean()
    assert spread < shuffled / 4  # a batch's texts are of similar length
    sampler.set_epoch(1)
    assert list(sampler) != first and list(LengthBucketSampler(lengths, 32, 10, 42)) == first


def test_word_dropout_turns_words_into_unk_and_leaves_padding_alone():
    from archbench.tasks.classification import drop_words

    torch.manual_seed(0)
    ids = torch.randint(2, 100, (200, 30))
    ids[:, 20:] = PAD_ID
    dropped = drop_words(ids, 0.25)
    assert (dropped[:, 20:] == PAD_ID).all()
    changed = dropped[:, :20] != ids[:, :20]
    assert (dropped[:, :20][changed] == UNK_ID).all() and 0.2 < changed.float().mean() < 0.3


def test_the_text_report_shows_class_names_and_the_most_confident_mistakes(tmp_path):
    """Two models' runs on a prepared SST-2-format split: the per-class table is headed by the class
    names and each model's surest wrong answers are quoted with their test texts."""
    import numpy as np

    from archbench.report.compare import write_report

    prepared = tmp_path / "prepared" / "sst2"
    meta = prepare(_data_cfg("sst2", root=_sst2_files(tmp_path / "raw"), md5="null", val_sentences=4), prepared)
    targets = torch.load(prepared / "test.pt", weights_only=True)["y"].numpy()
    texts = json.loads((prepared / "test_texts.json").read_text())
    for model, flip in (("boe", 0), ("cnn", 3)):
        folder = tmp_path / "results" / f"sst2-{model}" / "seed42"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"data": "sst2", "model": model, "seed": 42,
                                                     "task": "classification", "data_dir": str(prepared)}))
        (folder / "metrics.json").write_text(json.dumps({"test/acc": 0.9, "parameters": 1}))
        predicted = targets.copy()
        predicted[flip] = 1 - predicted[flip]  # one confident mistake, on text number `flip`
        probs = np.full((len(targets), 2), 0.05)
        probs[np.arange(len(targets)), predicted] = 0.95
        np.savez_compressed(folder / "test_predictions.npz", probs=probs, targets=targets)
    write_report(tmp_path / "results", tmp_path / "reports")
    report = (tmp_path / "reports" / "comparison.md").read_text()
    assert "| model | negative | positive |" in report and meta.class_names == ["negative", "positive"]
    mistakes = report[report.index("Most confident mistakes"):]
    assert f"| boe | {texts[0]} |" in mistakes and f"| cnn | {texts[3]} |" in mistakes


@pytest.mark.parametrize(("build", "layers"), [(_text_rnn, ["embed_drop"]),
                                               (_text_transformer, ["embed_drop", "head_drop"])])
def test_text_nets_pickled_before_their_dropout_options_still_predict(build, layers):
    """Text classifiers are logged pickled: a net saved before embed_dropout/head_dropout existed
    (simulated by removing those layers before pickling) loads with identities and predicts as
    the same net does now."""
    torch.manual_seed(0)
    net = build().eval()
    old = build().eval()
    old.load_state_dict(net.state_dict())
    for name in layers:
        del old._modules[name]
    loaded = repickled(old)
    ids = torch.randint(2, 50, (3, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), net(ids), rtol=0, atol=0)
    assert all(isinstance(getattr(loaded, name), torch.nn.Identity) for name in layers)
