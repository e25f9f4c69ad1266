"""``archbench-generate --model-uri URI | --registered DATA-MODEL [--prompt TEXT] [--output FILE]``:
sample text from a logged or registered character language model (e.g. ``runs:/<run_id>/model``,
or ``--registered pydoc_text-transformer`` for ``models:/archbench-pydoc_text-transformer@champion``;
printed, or written to ``--output``), or images from an image generator (a GAN, DCGAN, VAE or autoencoder: ``--registered digits-gan``),
written as one PNG grid (``--output``; ``--npy`` adds the images as an (N, C, H, W) array in [0, 1])."""

from __future__ import annotations

import argparse
from pathlib import Path

from archbench.cli.common import (
    add_model_arguments,
    at_least,
    fail,
    load_logged_model,
    model_uri,
    other_program_hint,
    reporting_errors,
)

PROGRAM = "archbench-generate"
IMAGE_TASKS = ("adversarial", "autoencoding")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    add_model_arguments(parser, "pydoc_text-transformer")
    parser.add_argument("--prompt", default=None, help="text: the start of the sample (default: a newline)")
    parser.add_argument("--length", type=int, default=None, help="text: characters to sample (default 300)")
    parser.add_argument("--temperature", type=float, default=None, help="text: softmax temperature (default 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="text: sample among the k likeliest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=None, help="images: how many (default 64)")
    parser.add_argument("--output", type=Path, default=None,
                        help="images: the PNG grid (default samples.png); text: a file for the sample (default: printed)")
    parser.add_argument("--npy", action="store_true", help="images: also FILE.npy, (N, C, H, W) in [0, 1]")
    args = parser.parse_args(argv)
    at_least(PROGRAM, "--length", args.length, 1)
    at_least(PROGRAM, "--top-k", args.top_k, 1)
    at_least(PROGRAM, "--samples", args.samples, 1)
    at_least(PROGRAM, "--temperature", args.temperature, 0, exclusive=True)

    def run() -> None:
        model = load_logged_model(PROGRAM, args, "forward", "a language model or an image generator")
        if hasattr(model, "generate"):
            _sample_text(model, args)
        else:
            _sample_images(model, args)

    reporting_errors(PROGRAM, run)


KIND_OPTIONS = {  # each kind of model: its name, and the options only it reads with their defaults
    "text": ("a language model", {"--prompt": ("prompt", "\n"), "--length": ("length", 300),
                                  "--temperature": ("temperature", 0.8), "--top-k": ("top_k", None)}),
    "images": ("an image generator", {"--samples": ("samples", 64), "--npy": ("npy", False)}),
}


def _kind_options(args: argparse.Namespace, kind: str) -> None:
    """One line for options that only the other kind of model reads (``--samples`` to a language
    model, say: they would change nothing, and the user expects them to); then the defaults of
    this kind's options that were not given."""
    other = "images" if kind == "text" else "text"
    given = [option for option, (dest, _) in KIND_OPTIONS[other][1].items() if getattr(args, dest) not in (None, False)]
    name, own = KIND_OPTIONS[kind]
    if given:
        fail(PROGRAM, f"{', '.join(given)}: {model_uri(args)} is {name}, which takes {', '.join(own)}, "
                      "--seed and --output")
    for dest, default in own.values():
        if getattr(args, dest) is None:
            setattr(args, dest, default)


def _sample_text(model, args: argparse.Namespace) -> None:
    """``--length`` characters after ``--prompt``, printed or written to ``--output`` (UTF-8)."""
    _kind_options(args, "text")
    if args.output is not None and args.output.suffix.lower() in (".png", ".npy"):
        fail(PROGRAM, f"--output {args.output}: {model_uri(args)} is a language model: it writes text (FILE.txt)")
    sample = model.generate(args.prompt, args.length, args.temperature, args.top_k, args.seed)
    if args.output is None:
        print(sample)
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(sample + "\n", encoding="utf-8")
    print(f"{PROGRAM}: {len(sample)} characters from seed {args.seed} -> {args.output}")


def _noise_width(uri: str) -> int:
    """The generator's noise width, from its training run's task and its logged signature: one line
    for any other model."""
    import mlflow

    from archbench.tracking.runs import source_run_id

    client = mlflow.MlflowClient()
    run_id = source_run_id(client, uri)
    task = client.get_run(run_id).data.tags.get("task", "") if run_id else ""
    signature = mlflow.models.get_model_info(uri).signature
    shape = signature.inputs.inputs[0].shape if signature is not None and signature.inputs else ()
    if task not in IMAGE_TASKS or len(shape) != 2:
        kind = f"{'an' if task[:1] in 'aeiou' else 'a'} {task}" if task else "not a"
        fail(PROGRAM, f"{uri} is {kind} model, not a language model or an image generator{other_program_hint(task)}")
    return int(shape[1])


def _sample_images(model, args: argparse.Namespace) -> None:
    """``--samples`` images from seeded N(0, I) noise, as one grid (and an array)."""
    import numpy as np
    import torch

    from archbench.tasks.callbacks import save_grid

    width = _noise_width(model_uri(args))
    _kind_options(args, "images")
    args.output = args.output or Path("samples.png")
    if args.output.suffix.lower() != ".png":
        fail(PROGRAM, f"--output {args.output}: a .png file (the grid); --npy adds the array beside it")
    noise = torch.randn(args.samples, width, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        images = model(noise).clamp(0, 1)
    save_grid(images, args.output, columns=min(args.samples, 10))
    said = f"{args.output}"
    if args.npy:
        np.save(args.output.with_suffix(".npy"), images.numpy())
        said += f", {args.output.with_suffix('.npy')}"
    print(f"{PROGRAM}: {args.samples} images {tuple(images.shape[1:])} from seed {args.seed} -> {said}")


if __name__ == "__main__":
    main()
