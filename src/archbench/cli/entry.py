"""The console scripts (``[project.scripts]``): each program's ``main`` followed by a quick exit.

After a training the interpreter's own teardown (freeing torch's, Lightning's and MLflow's module
graph) took 2.5 s of a 17 s ``archbench-train`` here (bench/startup.py's "rest"). A program that
has finished runs the registered exit handlers (MLflow, logging), flushes its output and leaves
with ``os._exit``; while another non-daemon thread is alive it exits normally instead. Calling a
``main`` directly (tests, notebooks) never exits the caller.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

# each program and the module whose ``main()`` (reading ``sys.argv``) it runs
PROGRAMS = {"archbench-train": "archbench.cli.train", "archbench-prepare": "archbench.cli.prepare",
            "archbench-compare": "archbench.cli.compare", "archbench-generate": "archbench.cli.generate",
            "archbench-predict": "archbench.cli.predict", "archbench-stylize": "archbench.cli.stylize",
            "archbench-transcribe": "archbench.cli.transcribe", "archbench-recommend": "archbench.cli.recommend",
            "archbench-export": "archbench.cli.export", "archbench-trial": "archbench.cli.trial",
            "archbench-sbatch": "archbench.cli.sbatch"}


def exit_status(main: Callable[[], None]) -> int:
    """``main()``'s exit status, as the interpreter would report it (a string: printed, then 1)."""
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
    code = exit_status(main)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if any(t.is_alive() for t in others):
        raise SystemExit(code)
    atexit._run_exitfuncs()  # what a normal exit runs first (CPython's own hook for it)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _script(program: str) -> Callable[[], NoReturn]:
    def script() -> NoReturn:
        from archbench.gc_policy import defer_collection

        defer_collection()  # before the imports: they are what start-up's collections walk
        run(importlib.import_module(PROGRAMS[program]).main)  # imported on call: --help stays quick

    script.__name__ = program.removeprefix("archbench-")
    return script


train = _script("archbench-train")
prepare = _script("archbench-prepare")
compare = _script("archbench-compare")
generate = _script("archbench-generate")
predict = _script("archbench-predict")
stylize = _script("archbench-stylize")
transcribe = _script("archbench-transcribe")
recommend = _script("archbench-recommend")
export = _script("archbench-export")
trial = _script("archbench-trial")
sbatch = _script("archbench-sbatch")
