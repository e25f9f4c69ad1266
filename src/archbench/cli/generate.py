"""``archbench-generate --model-uri URI [--prompt TEXT]``: sample text from a logged or registered
character language model (e.g. ``runs:/<run_id>/model`` or ``models:/archbench-pydoc_text-transformer@champion``)."""

from __future__ import annotations

import argparse
import os

from archbench.cli.common import fail, load_torch_model, reporting_errors

PROGRAM = "archbench-generate"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--prompt", default="\n")
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the project root")
    args = parser.parse_args(argv)

    def run() -> None:
        import mlflow
        from mlflow.exceptions import MlflowException

        from archbench.paths import project_root

        mlflow.set_tracking_uri(args.tracking_uri or f"sqlite:///{project_root() / 'mlflow.db'}")
        try:
            model = load_torch_model(args.model_uri)
        except (MlflowException, OSError) as err:
            fail(PROGRAM, f"cannot load {args.model_uri}: {str(err).splitlines()[0]}")
        if not hasattr(model, "generate"):
            fail(PROGRAM, f"{args.model_uri} is not a language model (trained on a text dataset)")
        print(model.generate(args.prompt, args.length, args.temperature, args.top_k, args.seed))

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
