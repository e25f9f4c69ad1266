"""``archbench-generate --model-uri URI | --registered DATA-MODEL [--prompt TEXT]``: sample text from a
logged or registered character language model (e.g. ``runs:/<run_id>/model``, or
``--registered pydoc_text-transformer`` for ``models:/archbench-pydoc_text-transformer@champion``)."""

from __future__ import annotations

import argparse

from archbench.cli.common import (
    add_model_arguments,
    at_least,
    load_logged_model,
    reporting_errors,
)

PROGRAM = "archbench-generate"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    add_model_arguments(parser, "pydoc_text-transformer")
    parser.add_argument("--prompt", default="\n")
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    at_least(PROGRAM, "--length", args.length, 1)
    at_least(PROGRAM, "--top-k", args.top_k, 1)
    at_least(PROGRAM, "--temperature", args.temperature, 0, exclusive=True)

    def run() -> None:
        model = load_logged_model(PROGRAM, args, "generate", "a language model (trained on a text dataset)")
        print(model.generate(args.prompt, args.length, args.temperature, args.top_k, args.seed))

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
