"""``archbench-recommend USER --model-uri URI``: the top-k items for a user by a recommender
(task rating or ranking, e.g. ``data=movielens model=mf``) logged or registered in MLflow, in the
dataset's own user and item ids. ``--item ID`` instead scores one (user, item) pair. Prints CSV:
rank, item, title, score (a predicted rating, or for ranking models an interaction probability).
Items the user rated in training are left out unless ``--include-seen``.
"""

from __future__ import annotations

import argparse
import csv
import sys

from archbench.cli.common import (
    add_model_arguments,
    at_least,
    load_logged_model,
    reporting_errors,
)

PROGRAM = "archbench-recommend"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("user", type=int, help="a user id as in the ratings file (e.g. ml-100k's u.data)")
    parser.add_argument("--top", type=int, default=10, help="how many items to list")
    parser.add_argument("--item", type=int, default=None, help="score this item id for the user instead")
    parser.add_argument("--include-seen", action="store_true", help="also list items rated in training")
    add_model_arguments(parser, "movielens-mf")
    args = parser.parse_args(argv)
    at_least(PROGRAM, "--top", args.top, 1)

    def run() -> None:
        import torch

        model = load_logged_model(PROGRAM, args, "top_k", "a recommender (train one with data=movielens model=mf)")
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if args.item is not None:
            pair = torch.tensor([[model.user_index(args.user), model.item_index(args.item)]])
            with torch.no_grad():
                score = float(model(pair)[0])
            title = model.titles[int(pair[0, 1])] if model.titles else ""
            writer.writerows([["user", "item", "title", "score"], [args.user, args.item, title, f"{score:.4f}"]])
            return
        best = model.top_k(args.user, args.top, not args.include_seen)
        writer.writerow(["rank", "item", "title", "score"])
        for rank, (item, title, score) in enumerate(best, 1):
            writer.writerow([rank, item, title, f"{score:.4f}"])

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
