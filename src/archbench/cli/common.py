"""Shared behaviour of the entry points: one-line errors and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from archbench.errors import ArchbenchError, NonFiniteLossError

T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def fail(program: str, message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    print(f"{program}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def reporting_errors(program: str, body: Callable[[], T]) -> T:
    """Run ``body``; user errors become one stderr line and exit 2, a diverged run exit 3."""
    try:
        return body()
    except ArchbenchError as err:
        fail(program, str(err), EXIT_BAD_INPUT)
    except NonFiniteLossError as err:
        fail(program, f"training stopped: {err} (run marked FAILED in MLflow)", EXIT_DIVERGED)


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
