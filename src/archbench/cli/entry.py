"""The console scripts (``[project.scripts]``): each program's ``main`` followed by a quick exit.

After a training the interpreter's own teardown (freeing torch's, Lightning's and MLflow's module
graph) took 2.5 s of a 17 s ``archbench-train`` here (bench/startup.py's "rest"). A program that
has finished runs the registered exit handlers (MLflow, logging), flushes its output and leaves
with ``os._exit``; while another non-daemon thread is alive it exits normally instead. Calling a
``main`` directly (tests, notebooks) never exits the caller.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def _exit_code(main: Callable[[], None]) -> int:
    try:
        main()
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    return 0


def run(main: Callable[[], None]) -> NoReturn:
    """``main()``, then exit with its status, skipping the interpreter's teardown when safe."""
    code = _exit_code(main)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if any(t.is_alive() for t in others):
        raise SystemExit(code)
    atexit._run_exitfuncs()  # what a normal exit runs first (CPython's own hook for it)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def train() -> NoReturn:
    from archbench.cli.train import main

    run(main)


def prepare() -> NoReturn:
    from archbench.cli.prepare import main

    run(main)


def compare() -> NoReturn:
    from archbench.cli.compare import main

    run(main)


def generate() -> NoReturn:
    from archbench.cli.generate import main

    run(main)


def predict() -> NoReturn:
    from archbench.cli.predict import main

    run(main)
