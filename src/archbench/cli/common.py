"""Shared behaviour of the entry points: one-line errors and exit codes."""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from archbench.errors import ArchbenchError, NonFiniteLossError, RunInterrupted

T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def fail(program: str, message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    print(f"{program}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def reporting_errors(program: str, body: Callable[[], T]) -> T:
    """Run ``body``; user errors (archbench's, and Hydra's and OmegaConf's on overrides and config
    files) become one stderr line and exit 2, a diverged run exit 3."""
    try:
        return body()
    except ArchbenchError as err:
        fail(program, str(err), EXIT_BAD_INPUT)
    except NonFiniteLossError as err:
        fail(program, f"training stopped: {err} (run marked FAILED in MLflow)", EXIT_DIVERGED)
    except RunInterrupted as err:
        print(f"{program}: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as err:
        line = config_error_line(err) or path_error_line(err)
        if line is None:
            raise
        fail(program, line, EXIT_BAD_INPUT)


def at_least(program: str, option: str, value: float | None, low: float, note: str = "",
             exclusive: bool = False) -> None:
    """One line, exit 2, when an option's ``value`` (None: not given) is below ``low`` (or equal
    to it, with ``exclusive``)."""
    if value is not None and not (value > low if exclusive else value >= low):  # NaN too
        fail(program, f"{option} must be {'>' if exclusive else '≥'} {low:g}{note}, got {value:g}")


def config_error_line(err: BaseException, composed: Callable[[], Any] | None = None) -> str | None:
    """Hydra's or OmegaConf's error about an override or a config file as one line (with the
    OmegaConf error Hydra wraps, as Hydra prints it); None for any other error. An unknown key is
    named with its close spelling, looked up in ``composed()`` (default: archbench-train's config
    for the command line's groups)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(err, (HydraException, OmegaConfBaseException)):
        return None
    cause = f" ({err.__cause__})" if isinstance(err.__cause__, OmegaConfBaseException) else ""
    line = " ".join(f"{err}{cause}".split())
    unknown = re.search(r"Could not override '[^']+'.*is not in struct full_key: (\S+)", line)
    if not unknown:
        return line
    if composed is None:
        return _unknown_key_line(unknown.group(1)) or line
    return unknown_key_line(unknown.group(1), composed()) or line


def _unknown_key_line(key: str) -> str | None:
    """A key no config has (a typo, ``optimizer.lrr``) named with the close ones and its siblings,
    instead of Hydra's advice to append it (``+optimizer.lrr``), which would train as if unsaid;
    None when the config the command line composes cannot be read back."""
    from archbench.config import compose, config_groups

    groups = config_groups()
    choices = [a for a in sys.argv[1:] if "=" in a and a.split("=", 1)[0] in groups]
    named = [a for a in sys.argv[1:] if a in groups.get("data", [])]  # archbench-prepare NAME
    choices += [f"data={named[0]}"] if named else []
    try:
        cfg = compose(choices)
    except Exception:  # noqa: BLE001 - a hint only: Hydra's own line stands
        return None
    return unknown_key_line(key, cfg)


def unknown_key_line(key: str, cfg) -> str | None:
    """``key``, which ``cfg`` lacks, named with its close spelling and its section's keys; None
    when its parent is not a section of ``cfg``."""
    import difflib

    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return None
    keys = sorted(str(k) for k in node)
    close = difflib.get_close_matches(leaf, keys, n=1)
    if not close and parent == "data":  # data.path where this dataset names its files data.root
        from archbench.data.prepare import SOURCE_KEYS

        close = [k for k in keys if k in SOURCE_KEYS and leaf in SOURCE_KEYS][:1]
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
    shown = ", ".join(keys[:12]) + (", …" if len(keys) > 12 else "")
    return (f"unknown key {key}; {hint}{parent or 'the config'} has: {shown} "
            f"(+{key}=… adds a new key, which only a component that reads it uses)")


# errors of a path the user chose (a folder setting that names a file, a folder this user cannot
# write, a read-only or full disk), and what to do about each
PATH_PROBLEMS = {
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EEXIST: "a file stands where a folder is needed",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.EACCES: "this user may not write there: choose a folder it owns",
    errno.EPERM: "this user may not write there: choose a folder it owns",
    errno.EROFS: "a read-only file system: choose a writable folder",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
}


def path_error_line(err: BaseException) -> str | None:
    """An OSError on a path the user can fix, as one line naming the path; None for any other error
    (a missing file is not among them: the data sources name what to put where themselves)."""
    if not isinstance(err, OSError) or err.errno not in PATH_PROBLEMS or not err.filename:
        return None
    return f"cannot use {err.filename}: {err.strerror} ({PATH_PROBLEMS[err.errno]})"


def check_group_choices(argv: list[str], groups: dict[str, list[str]]) -> str | None:
    """A message for the first ``group=option`` override naming an option that does not exist."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key not in groups or key.startswith("hydra"):
            continue
        choices = [v.strip() for v in value.split(",")] if "(" not in value else []
        for choice in choices:
            if choice and choice != "null" and choice not in groups[key]:
                return f"unknown {key} {choice!r}; valid: {', '.join(groups[key])}"
    return None


def run_summary(out_dir) -> str:
    """What happened, in one block: where the run is, how it scored, where its model went."""
    import json
    from pathlib import Path

    out_dir = Path(out_dir)
    run = json.loads((out_dir / "run.json").read_text())
    metrics = json.loads((out_dir / "metrics.json").read_text())
    best = {k: v for k, v in metrics.items() if k.endswith("_best")}
    epochs = int(metrics.get("epochs", 0))
    lines = [
        f"archbench: {run['model']} on {run['data']} ({run.get('task', '')}) finished",
        f"  run directory  {out_dir}",
        f"  MLflow run     {run.get('run_id')}  (UI: #/experiments/{run.get('experiment_id')}/runs/"
        f"{run.get('run_id')}; store {run.get('tracking_uri')})",
        f"  test           {_test_metrics(metrics)}",
        "  best val       " + _best_epoch(out_dir, best),
        f"  trained        {epochs} epoch{'' if epochs == 1 else 's'} in {metrics.get('train_seconds', 0):.1f} s, "
        f"{int(metrics.get('parameters', 0)):,} parameters",
    ]
    if run.get("model_uri"):
        registered = run.get("registered")
        suffix = (f"; registered {registered['name']} v{registered['version']}"
                  + (" @champion" if registered.get("champion") else "")
                  + (f" ({registered['note']})" if registered.get("note") else "")) if registered else ""
        lines.append(f"  model          {run['model_uri']}{suffix}")
    return "\n".join(lines)


def job_line(out_dir, number: int) -> str:
    """One multirun job's result in a line: which pair, its test metrics, its folder."""
    import json
    from pathlib import Path

    out_dir = Path(out_dir)
    run = json.loads((out_dir / "run.json").read_text())
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return f"archbench: job {number}: {run['model']} on {run['data']} (seed {run.get('seed')}): test {_test_metrics(metrics)}  [{out_dir}]"


def _test_metrics(metrics: dict[str, float]) -> str:
    """``acc 0.9472, f1 0.9465, loss 0.2228``: a run's test metrics, by name."""
    return ", ".join(f"{k.removeprefix('test/')} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("test/"))


def _best_epoch(out_dir, best: dict[str, float]) -> str:
    """The validation metrics of the epoch whose checkpoint was kept (from ``curves.csv``), e.g.
    ``epoch 7: acc 0.9722, loss 0.1104 (kept by acc, ties by loss)``; else the monitored value.
    A classifier's monitor, accuracy plus a loss tie-break, reads above 1 and means little alone."""
    import csv

    plain = ", ".join(f"{k.removesuffix('_best')} {v:.4g}" for k, v in best.items())
    curves = out_dir / "curves.csv"
    if len(best) != 1 or not curves.is_file():
        return plain
    (name, value), = best.items()
    monitor = name.removesuffix("_best")
    with curves.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get(monitor)]
    if not rows:
        return plain
    row = min(rows, key=lambda r: abs(float(r[monitor]) - value))
    shown = ", ".join(f"{k.removeprefix('val/')} {float(v):.4g}" for k, v in row.items()
                      if k.startswith("val/") and k != "val/acc_then_loss" and v)
    how = "acc, ties by loss" if monitor == "val/acc_then_loss" else monitor.removeprefix("val/")
    return f"epoch {int(float(row['epoch'])) + 1}: {shown} (kept by {how})"


def wav_files(program: str, path) -> list:
    """A WAV file as itself, a folder as its ``.wav`` files (sub-folders too, hidden ones not,
    sorted); one line for a missing path or a folder without any."""
    from archbench.data.sources.folders import files_with

    if not path.exists():
        fail(program, f"no input file {path}")
    found = files_with(path, (".wav",)) if path.is_dir() else [path]
    if not found:
        fail(program, f"no .wav files in {path}")
    return found


PROGRAM_FOR_TASK = {  # which command reads a logged model of each task, and what it calls it
    "classification": ("archbench-predict", "a classifier"), "regression": ("archbench-predict", "a regressor"),
    "seq2seq": ("archbench-predict", "a translation model"), "ctc": ("archbench-transcribe", "a transcription model"),
    "language_model": ("archbench-generate", "a language model"),
    "adversarial": ("archbench-generate", "an image generator"), "autoencoding": ("archbench-generate", "an image generator"),
    "rating": ("archbench-recommend", "a recommender"), "ranking": ("archbench-recommend", "a recommender"),
}


def other_program_hint(task: str) -> str:
    """" (use archbench-X for a …)" for a model of ``task`` given to the wrong command ("" if unknown)."""
    found = PROGRAM_FOR_TASK.get(task)
    return f" (use {found[0]} for {found[1]})" if found else ""


def add_model_arguments(parser, example: str) -> None:
    """``--model-uri`` or ``--registered DATA-MODEL`` (one required) and ``--tracking-uri``."""
    import os

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model-uri", help=f"e.g. models:/archbench-{example}@champion or runs:/<id>/model")
    where.add_argument("--registered", metavar="DATA-MODEL",
                       help=f"shorthand for models:/archbench-DATA-MODEL@champion, e.g. {example}")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the project root")


def model_uri(args) -> str:
    """The model URI that ``--model-uri`` or ``--registered DATA-MODEL`` (its champion) names."""
    return args.model_uri or f"models:/archbench-{args.registered}@champion"


def load_torch_model(uri: str):
    """``mlflow.pytorch.load_model`` on the CPU, then the throwaway first vector-math call that
    ``archbench.threads`` explains, so the same input gets the same output bits in every process."""
    import mlflow.pytorch

    from archbench.threads import settle_vector_math

    model = mlflow.pytorch.load_model(uri, map_location="cpu")
    settle_vector_math()
    return model


def registry_hint(uri: str, tracking_uri: str) -> str:
    """For a ``models:/`` URI the registry cannot resolve, what it holds instead: the registered
    archbench models, or the named model's aliases and versions ("" for any other URI)."""
    import re

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(.+))?", uri)
    if match is None:
        return ""
    client = MlflowClient(tracking_uri)
    try:
        model = client.get_registered_model(match[1])
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        if not names:
            return f"; nothing is registered in {tracking_uri} (train with register=true)"
        short = [n.removeprefix("archbench-") for n in names if n.startswith("archbench-")]
        others = [n for n in names if not n.startswith("archbench-")]
        return ("; registered: " + ", ".join(short + others)
                + (" (--registered takes the DATA-MODEL part)" if short else ""))
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{match[1]}'"))
    aliases = ", ".join(f"@{alias} (v{version})" for alias, version in sorted(model.aliases.items()))
    return (f"; {match[1]} has aliases {aliases or 'none'}, versions "
            + ", ".join(map(str, versions)))


def load_logged_model(program: str, args, needs: str, what: str):
    """The torch model that ``--model-uri``/``--registered`` name, refused in one line when it
    cannot be loaded or lacks the method ``needs`` (``what``: the kind of model the program wants)."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per load, on stderr
    import mlflow
    from mlflow.exceptions import MlflowException

    from archbench.locks import local_store_path
    from archbench.paths import project_root
    from archbench.stores import check_tracking_store

    uri = model_uri(args)
    tracking_uri = args.tracking_uri or f"sqlite:///{project_root() / 'mlflow.db'}"
    reporting_errors(program, lambda: check_tracking_store(tracking_uri, "--tracking-uri"))
    store_file = local_store_path(tracking_uri)
    if store_file is not None and not store_file.is_file():
        fail(program, f"--tracking-uri: no tracking store at {store_file} (no such file); train there "
                      "first, or point --tracking-uri at the store the runs went to")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = load_torch_model(uri)
    except (MlflowException, OSError) as err:
        said = str(err).splitlines()[0].rstrip(".")
        fail(program, f"cannot load {uri}: {said}{registry_hint(uri, tracking_uri)}")
    if not hasattr(model, needs):
        fail(program, f"{uri} is not {what}")
    return model
