import json
import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED_MNIST

from archbench.config import compose
from archbench.data.datamodule import TensorDataModule
from archbench.data.prepare import prepare as prepare_config_dict
from archbench.data.sources.idx import MNIST_FILES
from archbench.data.store import load_all
from archbench.errors import ConfigError, DataError

SMALL_MNIST1D = {"seed": 42, "val_fraction": 0.1, "generate": {"num_samples": 1000}}


def prepare(name: str, cfg: dict, out_dir):
    """The engine on ``cfg`` with the source that conf/data/<name>.yaml declares."""
    return prepare_config_dict({"name": name, "source": compose([f"data={name}"]).data.source, **cfg},
                               out_dir)


def test_prepare_is_deterministic(tmp_path):
    first = prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "a")
    second = prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "b")
    assert first.checksum == second.checksum
    other = prepare("digits", {"seed": 7, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "c")
    assert other.checksum != first.checksum


def test_digits_splits_are_disjoint_stratified_and_normalised_on_train(tmp_path):
    meta = prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "d")
    assert meta.splits == {"train": 1293, "val": 144, "test": 360}
    assert sum(meta.splits.values()) == 1797
    assert meta.input_shape == [1, 8, 8] and meta.num_classes == 10 and meta.kind == "image"
    _, splits = load_all(tmp_path / "d")
    train_x = splits["train"]["x"]
    assert abs(float(train_x.mean())) < 1e-4 and abs(float(train_x.std()) - 1) < 1e-3
    rows = {tuple(x.flatten().tolist()) for x in splits["test"]["x"]}
    assert not rows & {tuple(x.flatten().tolist()) for x in splits["val"]["x"][:50]}
    counts = torch.bincount(splits["val"]["y"], minlength=10)
    assert counts.min() >= 13  # stratified: 10 % of ~130 per class


def test_breast_cancer_is_standardised_per_feature(tmp_path):
    meta = prepare("breast_cancer", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "b")
    assert meta.kind == "tabular" and meta.input_shape == [30] and meta.num_classes == 2
    assert meta.class_names == ["malignant", "benign"]
    _, splits = load_all(tmp_path / "b")
    assert torch.allclose(splits["train"]["x"].mean(0), torch.zeros(30), atol=1e-4)
    assert len(meta.normalization["mean"]) == 30


def test_mnist1d_published_defaults_and_generation_args(tmp_path):
    meta = prepare("mnist1d", {"seed": 42, "val_fraction": 0.1}, tmp_path / "full")
    assert meta.splits == {"train": 3600, "val": 400, "test": 1000}
    assert meta.input_shape == [1, 40] and meta.source["generate"]["seed"] == 42
    small = prepare("mnist1d", {**SMALL_MNIST1D, "generate": {"num_samples": 1000,
                                                              "final_seq_length": 30}}, tmp_path / "s")
    assert small.splits["test"] == 200 and small.input_shape == [1, 30]
    with pytest.raises(ConfigError, match="unknown mnist1d generation argument"):
        prepare("mnist1d", {"generate": {"url": "x"}}, tmp_path / "bad")


def test_mnist_missing_files_names_files_and_directory(tmp_path):
    with pytest.raises(DataError) as err:
        prepare("mnist", {"root": str(tmp_path / "nowhere")}, tmp_path / "m")
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)
    assert str(tmp_path / "nowhere") in str(err.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not (SHARED_MNIST / MNIST_FILES["test_images"][0]).is_file(),
                    reason="../shared/datasets/mnist not present")
def test_mnist_t10k_only_is_split_deterministically(tmp_path):
    cfg = {"root": str(SHARED_MNIST), "seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}
    meta = prepare("mnist", cfg, tmp_path / "m")
    assert meta.splits == {"train": 7200, "val": 800, "test": 2000}
    assert "t10k only" in meta.source["layout"]
    assert meta.source["files_md5"]["t10k-images-idx3-ubyte.gz"] == MNIST_FILES["test_images"][1]
    assert prepare("mnist", cfg, tmp_path / "again").checksum == meta.checksum


def test_mnist_rejects_a_file_with_the_wrong_md5(tmp_path):
    for key in ("test_images", "test_labels"):
        (tmp_path / MNIST_FILES[key][0]).write_bytes(b"not mnist")
    with pytest.raises(DataError, match="not the official"):
        prepare("mnist", {"root": str(tmp_path)}, tmp_path / "m")


def test_datamodule_serves_tensor_batches(tmp_path):
    prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "d")
    dm = TensorDataModule(tmp_path / "d", batch_size=32, eval_batch_size=100)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 144
    assert [len(b[1]) for b in dm.test_dataloader()] == [100, 100, 100, 60]
    rows = TensorDataModule(tmp_path / "d", layout="rows")
    rows.setup()
    assert rows.input_shape == [8, 8]


def test_datamodule_shuffles_train_only(tmp_path):
    prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "d")
    dm = TensorDataModule(tmp_path / "d", batch_size=2000, eval_batch_size=2000)
    dm.setup()
    _, train_y = next(iter(dm.train_dataloader()))
    _, val_y = next(iter(dm.val_dataloader()))
    assert not torch.equal(train_y, dm.splits["train"].y)
    assert torch.equal(val_y, dm.splits["val"].y)


def test_tampered_prepared_data_is_detected(tmp_path):
    prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "d")
    tensors = torch.load(tmp_path / "d" / "train.pt", weights_only=True)
    tensors["y"][0] = (tensors["y"][0] + 1) % 10
    torch.save(tensors, tmp_path / "d" / "train.pt")
    with pytest.raises(DataError, match="does not match its meta.json checksum"):
        load_all(tmp_path / "d")


def test_a_failed_prepare_keeps_the_previous_data(tmp_path):
    prepare("digits", {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}, tmp_path / "d")
    before = json.loads((tmp_path / "d" / "meta.json").read_text())["checksum"]
    with pytest.raises(ConfigError):
        prepare("digits", {"seed": 42, "val_fraction": 1.5}, tmp_path / "d")
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["checksum"] == before
    shutil.rmtree(tmp_path / "d")


def test_unknown_source_function_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="data.source=archbench.data.sources.nowhere.cifar: no such function"):
        prepare_config_dict({"name": "cifar", "source": "archbench.data.sources.nowhere.cifar"}, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_rows_layout_rejects_sequences(tmp_path):
    prepare("mnist1d", SMALL_MNIST1D, tmp_path / "s")
    with pytest.raises(ConfigError, match="layout=rows needs images"):
        TensorDataModule(tmp_path / "s", layout="rows").setup()
    assert np.isclose(TensorDataModule(tmp_path / "s").load().val_fraction, 0.1)


def test_pydoc_text_is_a_contiguous_90_5_5_character_split(tmp_path):
    meta = prepare("pydoc_text", {"seed": 42, "val_fraction": 0.05, "test_fraction": 0.05}, tmp_path / "t")
    total = sum(meta.splits.values())
    assert meta.kind == "text" and total == meta.source["characters"] > 400_000
    assert meta.splits["train"] == int(total * 0.9)
    _, splits = load_all(tmp_path / "t")
    text = "".join(meta.class_names[i] for i in splits["train"]["x"][:200].tolist())
    from pydoc_data.topics import topics

    assert text == ("\n\n".join(topics[k] for k in sorted(topics)))[:200]
    assert meta.class_names == sorted(set(meta.class_names)) and meta.num_classes == len(meta.class_names)


def test_missing_text_file_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"text file not found: .*input.txt; put the corpus there"):
        prepare("tinyshakespeare", {"path": str(tmp_path / "input.txt")}, tmp_path / "t")


def test_your_own_corpus_is_a_dataset_of_its_own_by_config(tmp_path):
    """data=text_corpus: any UTF-8 file, its characters the vocabulary, split in contiguous runs;
    no path, or an empty file, is one line."""
    corpus = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.\n" * 40
    (tmp_path / "mine.txt").write_text(corpus, encoding="utf-8")
    settings = {k: v for k, v in compose(["data=text_corpus"]).data.items() if k != "path"}
    meta = prepare("text_corpus", {**settings, "path": str(tmp_path / "mine.txt")}, tmp_path / "t")
    assert meta.class_names == sorted(set(corpus)) and "ö" in meta.class_names
    assert abs(meta.splits["train"] - 0.9 * len(corpus)) <= 1 and meta.source["characters"] == len(corpus)
    _, splits = load_all(tmp_path / "t")
    assert "".join(meta.class_names[i] for i in splits["train"]["x"][:12].tolist()) == corpus[:12]
    with pytest.raises(ConfigError, match="data=text_corpus needs data.path=FILE"):
        prepare("text_corpus", {**settings, "path": None}, tmp_path / "none")
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="blank.txt holds no text"):
        prepare("text_corpus", {**settings, "path": str(tmp_path / "blank.txt")}, tmp_path / "blank")


@pytest.mark.parametrize("dataset, key, name", [
    ("tinyshakespeare", "path", "input.txt"),
    ("parallel_text", "tsv", "pairs.tsv"),
    ("text_files", "path", "reviews.csv"),
])
def test_a_text_file_not_in_utf8_is_named_in_one_line(tmp_path, dataset, key, name):
    """Latin-1 text (café); tinyshakespeare's and parallel_text's readers raised Python's
    UnicodeDecodeError, which names neither the file nor the fix."""
    path = tmp_path / name
    path.write_bytes("text,label\ncaf\xe9\tcoffee,a\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"{name}.* (is not UTF-8 text \(byte 14: invalid continuation byte\); "
                                        rf"save it as UTF-8|UnicodeDecodeError)"):
        prepare(dataset, {key: str(path)}, tmp_path / "t")


@pytest.mark.skipif(not (SHARED_MNIST.parent / "tinyshakespeare/input.txt").is_file(),
                    reason="../shared/datasets/tinyshakespeare not present")
def test_tinyshakespeare_from_a_local_file(tmp_path):
    path = SHARED_MNIST.parent / "tinyshakespeare/input.txt"
    meta = prepare("tinyshakespeare", {"path": str(path)}, tmp_path / "t")
    assert meta.source["characters"] == 1_115_394 and meta.num_classes == 65


@pytest.mark.parametrize("has_filter", [True, False])
def test_tarballs_extract_inside_root_and_refuse_escapes_on_any_python(tmp_path, monkeypatch, has_filter):
    """tarfile's "data" filter where Python has it, the same refusal by hand where it does not."""
    import io
    import tarfile

    from archbench.data.sources import extract_archive
    from archbench.errors import ArchbenchError

    if not has_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def tarball(name: str, member: str):
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo(member)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
        return path

    extract_archive(tarball("good.tar.gz", "data/a.txt"), tmp_path / "out")
    assert (tmp_path / "out" / "data" / "a.txt").read_bytes() == b"ok"
    with pytest.raises((ArchbenchError, tarfile.TarError)):
        extract_archive(tarball("bad.tar.gz", "../escaped.txt"), tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_an_interrupted_extraction_leaves_no_partial_dataset_tree(tmp_path, monkeypatch):
    """IMDB's tree is read as it stands (no per-file checksums): a half-extracted aclImdb/ must not
    pass for the dataset. Before, an extraction stopped midway left one that did."""
    import errno
    import io
    import tarfile

    from archbench.data.sources import extract_archive

    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            for label in ("neg", "pos"):
                info = tarfile.TarInfo(f"aclImdb/{split}/{label}/0_1.txt")
                info.size = 4
                tar.addfile(info, io.BytesIO(b"good"))
    real = tarfile.TarFile.extractall

    def cut_short(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", cut_short)
    with pytest.raises(OSError, match="No space left"):
        extract_archive(archive, tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []
    monkeypatch.setattr(tarfile.TarFile, "extractall", real)
    (tmp_path / "raw" / "aclImdb" / "train").mkdir(parents=True)  # an earlier partial tree: replaced
    extract_archive(archive, tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["aclImdb"]
    assert (tmp_path / "raw" / "aclImdb" / "test" / "pos" / "0_1.txt").read_bytes() == b"good"


def test_downloads_over_http_keep_only_a_complete_file_with_the_pinned_md5(tmp_path, capsys, monkeypatch):
    """A real HTTP server on loopback: the file arrives whole and said; a wrong MD5, a missing file
    and a server that stalls are one DataError each, leaving nothing behind to delete by hand."""
    import hashlib
    import socket
    import sys
    import time

    from conftest import free_port, http_server

    from archbench.data import sources

    served = tmp_path / "served"
    served.mkdir()
    payload = np.random.default_rng(0).bytes(3 << 20)
    (served / "archive.zip").write_bytes(payload)
    md5 = hashlib.md5(payload, usedforsecurity=False).hexdigest()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(served)]
    with http_server(command, f"{base}/"):
        got = sources.download(f"{base}/archive.zip", tmp_path / "raw" / "archive.zip", md5)
        assert got.read_bytes() == payload
        assert f"archbench: downloading {base}/archive.zip (3.1 MB)" in capsys.readouterr().out
        with pytest.raises(DataError, match="not the official 0{32} .*nothing was kept: run again"):
            sources.download(f"{base}/archive.zip", tmp_path / "bad" / "archive.zip", "0" * 32)
        with pytest.raises(DataError, match="HTTP Error 404"):
            sources.download(f"{base}/missing.zip", tmp_path / "bad" / "missing.zip")
    assert list((tmp_path / "bad").iterdir()) == []

    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 1)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(DataError, match="no data for 1 s"):
            sources.download(f"http://127.0.0.1:{silent.getsockname()[1]}/a.zip", tmp_path / "bad" / "a.zip")
    assert time.monotonic() - started < 10 and list((tmp_path / "bad").iterdir()) == []


def test_a_prepare_that_fails_mid_write_leaves_the_old_data_and_no_hidden_folder(tmp_path, monkeypatch):
    """A full disk (or Ctrl-C) while the splits are written: the previous prepared folder stands
    and no half-written staging folder is left beside it."""
    import errno

    cfg = {"seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}
    first = prepare("digits", cfg, tmp_path / "digits")
    real_save, calls = torch.save, []

    def full_disk(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        prepare("digits", {**cfg, "seed": 7}, tmp_path / "digits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]
    assert json.loads((tmp_path / "digits" / "meta.json").read_text())["checksum"] == first.checksum
