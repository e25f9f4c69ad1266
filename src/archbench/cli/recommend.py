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
    fail,
    load_logged_model,
    reporting_errors,
)

PROGRAM = "archbench-recommend"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("user", type=int, help="a user id as in the ratings file (e.g. ml-100k's u.data)")
    parser.add_argument("--top", type=int, default=None, help="how many items to list (default 10)")
    parser.add_argument("--item", type=int, default=None, help="score this item id for the user instead")
    parser.add_argument("--include-seen", action="store_true", help="also list items rated in training")
    add_model_arguments(parser, "movielens-mf")
    args = parser.parse_args(argv)
    at_least(PROGRAM, "--top", args.top, 1)
    if args.item is not None and (args.top is not None or args.include_seen):
        fail(PROGRAM, f"--item scores one (user, item) pair; {'--top' if args.top is not None else '--include-seen'} "
                      "applies to a list of items: give one or the other")

    def run() -> None:
        model = load_logged_model(PROGRAM, args, "top_k", "a recommender (train one with data=movielens model=mf)")
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if args.item is not None:
            _score_one(model, args, writer)
            return
        top = args.top or 10
        best = model.top_k(args.user, top, not args.include_seen)
        if len(best) < top:
            print(f"{PROGRAM}: user {args.user} has {len(best)} item(s) to list, not {top}"
                  + ("" if args.include_seen else " (the ones rated in training are left out: --include-seen)"),
                  file=sys.stderr)
        writer.writerow(["rank", "item", "title", "score"])
        for rank, (item, title, score) in enumerate(best, 1):
            writer.writerow([rank, item, title, f"{score:.4f}"])

    reporting_errors(PROGRAM, run)


def _score_one(model, args: argparse.Namespace, writer) -> None:
    """The ``--item`` row, and a note on stderr when the user rated that item in training (its
    score is then a fitted value, not a prediction)."""
    import torch

    user, item = model.user_index(args.user), model.item_index(args.item)
    with torch.no_grad():
        score = float(model(torch.tensor([[user, item]]))[0])
    title = model.titles[item] if model.titles else ""
    writer.writerows([["user", "item", "title", "score"], [args.user, args.item, title, f"{score:.4f}"]])
    if item in model.seen_items(user).tolist():
        print(f"{PROGRAM}: user {args.user} rated item {args.item} in training: the score is fitted, not predicted",
              file=sys.stderr)


if __name__ == "__main__":
    main()
