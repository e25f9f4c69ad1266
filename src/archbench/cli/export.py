"""``archbench-export --model-uri URI | --registered DATA-MODEL [--format auto|onnx|torchscript|pyfunc]``:
write a logged classifier's, regressor's or language model's forward as an ONNX file (run by
onnxruntime; ``auto``: TorchScript where ONNX cannot express the model), check its outputs against
PyTorch on the run's own first test batch, and log the file and the parity figures to the model's
MLflow run (``export/``). Exits 1 when the outputs differ by more than ``--tolerance``. ``pyfunc``:
an MLflow model that takes raw inputs (table rows by column name, texts, base64 image or WAV files) for
``mlflow models serve``, logged to the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from archbench.cli.common import (
    add_model_arguments,
    at_least,
    fail,
    load_logged_model,
    model_uri,
    reporting_errors,
)
from archbench.tracking.runs import source_run_id

PROGRAM = "archbench-export"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    add_model_arguments(parser, "digits-mlp")
    parser.add_argument("--format", default="auto", choices=["auto", "onnx", "torchscript", "pyfunc"],
                        help="auto: ONNX, else TorchScript (default); pyfunc: an MLflow model for `mlflow "
                             "models serve` that takes raw inputs (table rows by column name, texts, "
                             "base64 image files)")
    parser.add_argument("--output", type=Path, default=None,
                        help="a file (.onnx: ONNX, .pt: TorchScript) or a folder for model.onnx / model.pt "
                             "(default: outputs/export/<run id>)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="inputs of the test split to compare on (default: the run's data.eval_batch_size)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest absolute difference allowed")
    parser.add_argument("--no-log", action="store_true", help="do not log the file to the model's MLflow run")
    return parser


def _exportable_run(client, uri: str) -> str:
    """The training run behind ``uri``; refused in one line unless its task has an exportable forward."""
    from archbench.export import EXPORTABLE_TASKS

    run_id = source_run_id(client, uri)
    if run_id is None:
        fail(PROGRAM, f"{uri}: no training run behind it (give runs:/<id>/model or a registered model)")
    task = client.get_run(run_id).data.tags.get("task", "classification")
    if task not in EXPORTABLE_TASKS:
        fail(PROGRAM, f"{uri} is a {task} model; archbench-export writes the forward of "
                      f"{', '.join(EXPORTABLE_TASKS)} models")
    return run_id


def _file_place(args: argparse.Namespace) -> tuple[Path | None, str, str]:
    """Folder, file stem and format: ``--output DIR`` (``DIR/model.onnx``), or ``--output FILE.onnx``
    / ``FILE.pt``, whose suffix names the format (before, ``x.onnx`` became a folder ``x.onnx/``);
    no folder: the default one."""
    from archbench.export import SUFFIX

    output = args.output
    named = {suffix: fmt for fmt, suffix in SUFFIX.items()}.get(output.suffix) if output else None
    if named is None:
        return output, "model", args.format
    if args.format not in ("auto", named):
        kind = {"onnx": "an ONNX", "torchscript": "a TorchScript"}[named]
        fail(PROGRAM, f"--output {output} names {kind} file, and --format is {args.format}: "
                      f"give a {SUFFIX[args.format]} file or a folder")
    return output.parent, output.stem, named


def _export(args: argparse.Namespace) -> int:
    """Write the file, compare it with PyTorch on test inputs, log and print; 1 if over tolerance."""
    import mlflow
    from omegaconf import OmegaConf

    from archbench.export import export_with_parity, first_test_batch
    from archbench.paths import project_root

    out_dir, stem, fmt = _file_place(args) if args.format != "pyfunc" else (None, "", "")
    model = load_logged_model(PROGRAM, args, "forward", "a torch model")
    uri = model_uri(args)
    client = mlflow.MlflowClient()
    run_id = _exportable_run(client, uri)
    if args.format == "pyfunc":
        return _export_pyfunc(args, model, uri, client, run_id)
    cfg = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
    batch = first_test_batch(cfg, args.batch_size)
    out_dir = out_dir or project_root() / "outputs" / "export" / run_id
    path, parity, reason = export_with_parity(model, batch, fmt, out_dir, stem)
    figures = {**parity.as_dict(), "model_uri": uri, "tolerance": args.tolerance,
               "onnx_failure": reason, "file": path.name}
    if not args.no_log:
        client.log_artifact(run_id, str(path), "export")
        client.log_dict(run_id, figures, f"export/{parity.format}.json")
        client.log_metric(run_id, f"export/{parity.format}_max_abs_diff", parity.max_abs_diff)
    if reason:
        print(f"{PROGRAM}: ONNX cannot express this model ({reason}); wrote TorchScript")
    print(f"{PROGRAM}: {path} ({parity.format}); on {parity.batch_size} test inputs the largest "
          f"difference from PyTorch is {parity.max_abs_diff:.2e}, top class agrees on "
          f"{parity.same_argmax:.1%}" + ("" if args.no_log else f"; logged to run {run_id} (export/)"))
    print(json.dumps(figures))
    if parity.max_abs_diff > args.tolerance:
        print(f"{PROGRAM}: error: outputs differ by {parity.max_abs_diff:.2e} > --tolerance "
              f"{args.tolerance:g}", flush=True)
        return 1
    return 0


def _export_pyfunc(args: argparse.Namespace, model, uri: str, client, run_id: str) -> int:
    """The raw-input wrapper (``archbench.tracking.serving``) saved, loaded back and asked once, then
    logged to the model's run (``export/pyfunc``, servable as ``runs:/<run id>/export/pyfunc``)."""
    import mlflow

    from archbench.paths import project_root
    from archbench.tracking.serving import example_input, raw_input_reads, save_raw_input_model

    metadata = mlflow.models.get_model_info(uri).metadata or {}
    reads = raw_input_reads(model, metadata, client.get_run(run_id).data.tags)
    if reads is None:
        fail(PROGRAM, f"{uri} takes no raw inputs a pyfunc could read (a text, image or spoken-word "
                      f"classifier, or a model of a table with named columns, does); serve the model itself: it takes prepared tensors")
    out_dir = (args.output or project_root() / "outputs" / "export" / run_id) / "pyfunc"
    save_raw_input_model(uri, reads, out_dir)
    answer = mlflow.pyfunc.load_model(str(out_dir)).predict(example_input(reads))
    if not args.no_log:
        client.log_artifacts(run_id, str(out_dir), "export/pyfunc")
    served = str(out_dir) if args.no_log else f"runs:/{run_id}/export/pyfunc"
    print(f"{PROGRAM}: {out_dir} (pyfunc, {reads['kind']} inputs); it answers its example with "
          f"{answer.iloc[0].to_dict()}; serve it: mlflow models serve -m {served} --env-manager local")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    at_least(PROGRAM, "--batch-size", args.batch_size, 2, " (the batch axis stays dynamic)")
    at_least(PROGRAM, "--tolerance", args.tolerance, 0)
    code = reporting_errors(PROGRAM, lambda: _export(args))
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
