"""``archbench-predict INPUT --model-uri URI | --registered DATA-MODEL``: classify the rows of a
``.npy``, ``.csv`` or prepared ``.pt`` file with a logged classifier (``--model-uri``: the
``models:/m-…`` a training prints, or ``runs:/<run id>/model``) or a registered one
(``--registered``: the ``champion`` of ``archbench-<data>-<model>``), printing one line per sample:
index, label, probability, and the top classes. A regressor's inputs are read the same ways; it prints index and prediction (in the
target's own units). Inputs are in the space of archbench's prepared data (``data/prepared/<name>``),
i.e. normalised as ``meta.json`` records; ``.csv`` rows are flattened samples.

A text classifier (trained on ``data=sst2``, ``imdb``, ``text_files``) takes raw text instead: a
``.txt`` file with one example per line, a ``.csv``/``.tsv`` column (``--column``, default
``text``), or ``--text "..."`` (repeatable); the model tokenizes it
with its training vocabulary (unknown words → ``<unk>``).

An image classifier (trained on ``data=image_folder``, ``digits``, ``mnist``, ``cifar10``) also takes
image files: a PNG, JPEG, BMP, GIF, TIFF or WebP file, or a folder of them (one row each), read as its training images were
(grayscale or RGB, resized, normalised with its training statistics: its MLmodel metadata says how).

A model trained on a table (your own, ``data=csv``, or ``breast_cancer``, ``diabetes``) also takes
new rows of it by column name: a ``.csv`` with a header row (or a ``.parquet``), encoded and
normalised as the training rows were.

A spoken-word classifier (trained on ``data=fsdd``, ``fsdd_speaker``, ``audio_folder``) takes a
``.wav`` file instead, or a folder of them (one row each), turned into its training features (mono,
its sample rate, its frames).

A translation model (task seq2seq, e.g. ``data=multi30k model=seq2seq_attention``) translates the
same raw-text inputs, printing index, source and translation (``--beam-size``: 1 greedy, default
the model's own).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from math import prod
from pathlib import Path
from typing import Any

from archbench.cli.common import (
    add_model_arguments,
    at_least,
    fail,
    load_logged_model,
    model_uri,
    other_program_hint,
    reporting_errors,
    wav_files,
)
from archbench.tracking.runs import source_run_id

PROGRAM = "archbench-predict"


def _read_array(path: Path):
    """The samples in a .npy, .csv or prepared .pt file as float32; one line, exit 2, for a missing,
    unreadable, empty or non-numeric file and for NaN or infinite values."""
    import warnings

    import numpy as np
    import torch

    if not path.is_file():
        fail(PROGRAM, f"no input file {path}")
    if path.suffix.lower() == ".wav":
        fail(PROGRAM, f"{path}: this model classifies prepared tensors (.npy, .csv, .pt), not recordings; a "
                      f"WAV needs an audio classifier logged with its features (data=fsdd, fsdd_speaker, audio_folder)")
    readers = {".npy": lambda: np.load(path, allow_pickle=False),
               ".csv": lambda: np.loadtxt(path, delimiter=",", ndmin=2),
               ".pt": lambda: torch.load(path, map_location="cpu", weights_only=True)["x"].numpy()}
    if path.suffix not in readers:
        fail(PROGRAM, f"{path}: unsupported input type {path.suffix!r}; valid: .npy, .csv, .pt")
    if path.suffix == ".npy":
        with path.open("rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                fail(PROGRAM, f"{path}: not a NumPy .npy file (no NumPy header)")
    try:
        with warnings.catch_warnings():  # an empty .csv: refused below
            warnings.simplefilter("ignore", UserWarning)
            x = np.asarray(readers[path.suffix](), dtype=np.float32)
    except Exception as err:  # noqa: BLE001 - whatever a reader raises, the user's file is at fault
        hint = " (numbers only, one flattened sample a row, no header)" if path.suffix == ".csv" else ""
        fail(PROGRAM, f"{path}: cannot read it as {path.suffix}: {' '.join(str(err).split())}{hint}")
    if x.size == 0:
        fail(PROGRAM, f"{path}: no samples in it")
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)) if x.ndim > 1 else [0]
        fail(PROGRAM, f"{path}: NaN or infinite values (sample {int(rows[0])}); the model reads finite numbers")
    return x


def _load_inputs(path: Path, input_shape: list[int]):
    x = _read_array(path)
    if not input_shape:
        return x
    if path.suffix == ".csv" and x.shape[1] == prod(input_shape):
        return x.reshape(-1, *input_shape)  # one flattened sample per row
    if list(x.shape) == input_shape:
        return x[None]  # a single sample without its batch axis
    if list(x.shape[1:]) != input_shape:
        shown = [x.shape[1]] if path.suffix == ".csv" else list(x.shape)
        wanted = f"rows of {prod(input_shape)} values" if path.suffix == ".csv" else f"(N, {', '.join(map(str, input_shape))})"
        fail(PROGRAM, f"{path}: input of shape {shown}, the model expects {wanted} — "
                      f"samples of shape {input_shape} (a leading batch axis aside)")
    return x


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    for option, value in (("--top", args.top), ("--limit", args.limit), ("--beam-size", args.beam_size)):
        at_least(PROGRAM, option, value, 1)
    if (args.input is None) == (not args.text):
        fail(PROGRAM, "give either an INPUT file or --text \"...\" (not both)"
             if args.input is not None else "give an INPUT file (.npy, .csv, .pt, .txt) or --text \"...\"")
    reporting_errors(PROGRAM, lambda: _predict(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("input", type=Path, nargs="?",
                        help=".npy / .csv / prepared .pt file of samples (.txt: one text per line; "
                             "an image model: an image file or a folder of them)")
    parser.add_argument("--text", action="append", default=[],
                        help="a text to classify with a text classifier (repeatable)")
    parser.add_argument("--column", default="text",
                        help="text models given a .csv/.tsv: the column holding the texts (default: text)")
    add_model_arguments(parser, "mnist1d-cnn")
    parser.add_argument("--top", type=int, default=3, help="how many classes to list per sample")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="translation models: beam width (1: greedy; default: the model's decode.beam_size)")
    parser.add_argument("--limit", type=int, default=None, help="classify only the first N samples")
    return parser


def _load_with_tags(args: argparse.Namespace) -> tuple[str, Any, dict[str, str]]:
    """The model the arguments name, its URI and its training run's tags (one line if it cannot load)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    model = load_logged_model(PROGRAM, args, "forward", "a torch model")
    uri = model_uri(args)
    client = mlflow.MlflowClient()
    try:
        run_id = source_run_id(client, uri)
        tags = client.get_run(run_id).data.tags if run_id else {}
    except MlflowException as err:
        fail(PROGRAM, f"cannot load {uri}: {str(err).splitlines()[0]}")
    return uri, model, tags


def _predict(args: argparse.Namespace) -> None:
    uri, model, tags = _load_with_tags(args)
    task = tags.get("task", "classification")
    if task == "seq2seq":
        return _translate(model, _load_texts(args.input, args.text, args.column)[: args.limit], args.beam_size)
    if task not in ("classification", "regression"):
        fail(PROGRAM, f"{uri} is {'an' if task[:1] in 'aeiou' else 'a'} {task} model, not a classifier or regressor: archbench-predict "
                      f"reads their inputs{other_program_hint(task)}")
    outputs, column, inputs = _model_outputs(uri, model, tags, args)
    if task == "regression":
        return _print_values(outputs, column, inputs)
    if outputs.dim() != 2:
        fail(PROGRAM, f"{uri} is not a classifier (output shape {tuple(outputs.shape)})")
    _print_ranked(outputs, json.loads(tags.get("class_names", "[]")), args.top, column, inputs)


def _model_outputs(uri: str, model: Any, tags: dict[str, str],
                   args: argparse.Namespace) -> tuple[Any, str | None, list[str]]:
    """``(outputs (N, classes) or (N, 1), the input column's name or None, the inputs it shows)``:
    a recording, raw texts, image files, table rows by column name, or tensors, whichever the
    model reads."""
    import torch

    if hasattr(model, "predict_waves"):
        return _audio_outputs(uri, model, args.input, args.limit)
    if hasattr(model, "predict_texts"):
        texts = _load_texts(args.input, args.text, args.column)[: args.limit]
        _warn_unknown_words(_tokens(texts, model.tokenizer), model.vocab)
        return model.predict_texts(texts), "text", texts
    from archbench.data.images import IMAGE_SUFFIXES

    if args.input is not None and (args.input.is_dir() or args.input.suffix.lower() in IMAGE_SUFFIXES):
        return _image_outputs(uri, model, args.input, args.limit)
    if args.text or args.input.suffix == ".txt":
        fail(PROGRAM, f"{uri} classifies {tags.get('data', 'tensor')} inputs, not raw text: give a "
                      f".npy, .csv or .pt file")
    suffix = args.input.suffix.lower()
    if suffix in (".parquet", ".pq") or (suffix in (".csv", ".tsv") and _has_header(args.input)):
        return _table_outputs(uri, model, args.input, args.limit)
    x = _load_inputs(args.input, json.loads(tags.get("input_shape", "[]")))[: args.limit]
    with torch.no_grad():
        return model(torch.from_numpy(x)), None, []


def _audio_outputs(uri: str, model: Any, path: Path | None, limit: int | None) -> tuple[Any, str, list[str]]:
    """A WAV file, or every ``.wav`` in a folder and its sub-folders (hidden ones not), read as the
    model's training recordings were (mono, its sample rate, padded or cropped to its frames)."""
    from archbench.data.audio import read_wav

    if path is None or not (path.is_dir() or path.suffix.lower() == ".wav"):
        fail(PROGRAM, f"{uri} classifies recordings: give a .wav file or a folder of them (got {path or '--text'})")
    files = wav_files(PROGRAM, path)[:limit]
    return model.predict_waves([read_wav(file, model.sample_rate) for file in files]), "file", [str(f) for f in files]


def _raw_input_settings(uri: str, key: str) -> dict[str, Any] | None:
    """How the model reads raw inputs (``image_input``, ``table_input``: its MLmodel metadata,
    written by ``Task.model_metadata``); None when it was logged without them."""
    import mlflow

    return (mlflow.models.get_model_info(uri).metadata or {}).get(key)


def _image_outputs(uri: str, model: Any, path: Path, limit: int | None) -> tuple[Any, str, list[str]]:
    """An image file, or every image file in a folder, read as the model's training images were
    (its MLmodel metadata says their channels, size, normalisation and layout)."""
    import numpy as np
    import torch

    from archbench.data.images import IMAGE_KINDS, image_files, model_inputs, read_image

    settings = _raw_input_settings(uri, "image_input")
    if settings is None:
        fail(PROGRAM, f"{uri} does not say how to read image files (not an image classifier, or logged "
                      f"before archbench recorded it: train it again): give a .npy, .csv or .pt of prepared samples")
    if not path.exists():
        fail(PROGRAM, f"no input file {path}")
    files = (image_files(path) if path.is_dir() else [path])[:limit]
    if not files:
        fail(PROGRAM, f"no image files ({IMAGE_KINDS}) in {path}")
    size = (int(settings["size"][0]), int(settings["size"][1]))
    images = np.stack([read_image(file, int(settings["channels"]), size) for file in files])
    with torch.no_grad():
        return model(model_inputs(images, settings)), "file", [str(file) for file in files]


def _has_header(path: Path) -> bool:
    """Whether a table file starts with a row of names (rows by column name) rather than numbers."""
    from archbench.data.sources import TEXT_ENCODING
    from archbench.data.sources.table_file import field_separator

    if not path.is_file():
        return False
    with path.open(encoding=TEXT_ENCODING, errors="replace") as file:
        first = file.readline().strip()
    fields = [f.strip().strip('"') for f in first.split(field_separator(path, "auto"))] if first else []
    try:
        [float(f) for f in fields]
    except ValueError:
        return True
    return False


def _table_outputs(uri: str, model: Any, path: Path, limit: int | None) -> tuple[Any, None, list[str]]:
    """New rows of the model's training table, by column name (its MLmodel metadata says which
    columns, their one-hot values and their normalisation)."""
    import torch

    from archbench.data.sources.table_file import encode_rows, read_table

    spec = _raw_input_settings(uri, "table_input")
    if spec is None:
        fail(PROGRAM, f"{path} holds rows by column name, and {uri} does not say how to read them (a model "
                      f"trained on data=csv or a built-in table does): give rows of prepared numbers, no header")
    frame, _ = read_table(path)
    x = torch.from_numpy(encode_rows(frame, spec, str(path))[:limit])
    if len(x) == 0:
        fail(PROGRAM, f"{path}: no rows under its header")
    with torch.no_grad():
        return model(x), None, []


def _print_ranked(probs: Any, class_names: list[str], top: int, column: str | None, inputs: list[str]) -> None:
    """One CSV row per sample: index, label, its probability, the ``top`` classes (and the input)."""
    ranked_top = probs.topk(min(top, probs.shape[1]), dim=1)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["index", "label", "probability", "top", *([column] if column else [])])
    for i, (p, c) in enumerate(zip(ranked_top.values.tolist(), ranked_top.indices.tolist(), strict=True)):
        names = [class_names[j] if j < len(class_names) else str(j) for j in c]
        ranked = " ".join(f"{n}:{q:.3f}" for n, q in zip(names, p, strict=True))
        writer.writerow([i, names[0], f"{p[0]:.4f}", ranked, *([inputs[i]] if column else [])])


def _print_values(outputs: Any, column: str | None, inputs: list[str]) -> None:
    """One CSV row per sample: index, the regressor's prediction in the target's units (and the input)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["index", "prediction", *([column] if column else [])])
    for i, value in enumerate(outputs.reshape(len(outputs), -1)[:, 0].tolist()):
        writer.writerow([i, f"{value:.6g}", *([inputs[i]] if column else [])])


def _translate(model, texts: list[str], beam_size: int | None) -> None:
    """One CSV row per sentence: index, source, translation."""
    if beam_size is not None and beam_size < 1:
        fail(PROGRAM, f"--beam-size must be ≥ 1 (1: greedy), got {beam_size}")
    limit, tokens = int(model.tokenizer["max_len"]), _tokens(texts, model.tokenizer)
    long = [i for i, words in enumerate(tokens) if len(words) > limit]
    if long:  # the encoder reads the first max_len tokens, as in training: the rest goes untranslated
        print(f"{PROGRAM}: warning: {len(long)} sentence(s) longer than the {limit} tokens the model reads "
              f"(index {', '.join(map(str, long[:5]))}{', …' if len(long) > 5 else ''}): only their first {limit} "
              f"are translated; split them into sentences", file=sys.stderr)
    _warn_unknown_words(tokens, model.source_vocab)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["index", "source", "translation"])
    for i, (source, target) in enumerate(zip(texts, model.translate(texts, beam_size), strict=True)):
        writer.writerow([i, source, target])


def _tokens(texts: list[str], tokenizer: dict[str, Any]) -> list[list[str]]:
    """Each text's words as the model's training tokenizer split them."""
    from archbench.data.tokens import tokenize

    return [tokenize(t, bool(tokenizer.get("lowercase", True))) for t in texts]


def _warn_unknown_words(tokens: list[list[str]], vocab: list[str]) -> None:
    """One line on stderr when words are outside the training vocabulary (the model reads each as
    ``<unk>``), naming a few, and the texts with no known word at all, whose output rests on
    ``<unk>`` alone (before, nothing said so)."""
    known = set(vocab)
    unknown = [w for words in tokens for w in words if w not in known]
    if not unknown:
        return
    blind = [i for i, words in enumerate(tokens) if words and not known.intersection(words)]
    names = list(dict.fromkeys(unknown))
    line = (f"{PROGRAM}: warning: {len(unknown)} of {sum(map(len, tokens))} words are not in the model's training "
            f"vocabulary and read as <unk> ({', '.join(names[:5])}{', …' if len(names) > 5 else ''})")
    if blind:
        line += (f"; no word of index {', '.join(map(str, blind[:5]))}{', …' if len(blind) > 5 else ''} is known: "
                 f"{'its output rests' if len(blind) == 1 else 'their outputs rest'} on <unk> alone")
    print(line, file=sys.stderr)


def _load_texts(path: Path | None, texts: list[str], column: str = "text") -> list[str]:
    """``--text`` values, the lines of a UTF-8 ``.txt`` file, or the ``column`` of a ``.csv`` /
    ``.tsv`` with a header row (an empty text is an error)."""
    from archbench.data.sources import TEXT_ENCODING, utf8

    if path is not None:
        if path.suffix.lower() not in (".txt", ".csv", ".tsv"):
            fail(PROGRAM, f"{path}: a text model reads a .txt file (one text per line), a .csv/.tsv "
                          f"with a text column, or --text")
        if not path.is_file():
            fail(PROGRAM, f"no input file {path}")
        if path.suffix.lower() != ".txt":
            return _table_texts(path, column)
        with utf8(path):
            texts = path.read_text(encoding=TEXT_ENCODING).splitlines()
        while texts and not texts[-1].strip():
            texts.pop()  # a trailing newline is not an example
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            where = f"line {number} of {path}" if path is not None else f"--text number {number}"
            fail(PROGRAM, f"{where} is empty: give one non-empty text per line")
    if not texts:
        fail(PROGRAM, f"{path} holds no text")
    return texts


def _table_texts(path: Path, column: str) -> list[str]:
    """The texts in one column of a table file whose header names its columns."""
    from archbench.data.sources.text_classification import read_text_table

    frame = read_text_table(path)
    if column not in frame.columns:
        fail(PROGRAM, f"{path}: no column {column!r} (--column NAME names the text column); "
                      f"columns: {', '.join(map(str, frame.columns))}")
    texts = frame[column].tolist()
    empty = next((i for i, text in enumerate(texts) if not text.strip()), None)
    if empty is not None:
        fail(PROGRAM, f"{path}: row {empty + 1}'s {column!r} is empty: give one non-empty text per row")
    if not texts:
        fail(PROGRAM, f"{path} holds no text")
    return texts


if __name__ == "__main__":
    main()
