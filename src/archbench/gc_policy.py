"""Python's cyclic garbage collector around a console script's start-up.

Importing torch, Lightning, MLflow and SQLAlchemy builds about a million objects, and every full
collection walks all of them again; while they load, the collector's default thresholds start one
after each ~25 % growth of the heap. Measured here: ~1 s of the 6.5 s from command to exit of
``archbench-train data=digits model=mlp`` (bench/startup.py). So a console script, and a Hydra
launcher's job process where its job starts (``run_from_hydra``), collects rarely while it starts
(``defer_collection``); when a training loop begins, what start-up built is frozen (never walked
again, ``gc.freeze``) and the default thresholds return (``settle``), so the loop's own cyclic
garbage is collected as usual. A process that never deferred (tests, notebooks, ``train(cfg)``
called directly) is left as it is.
"""

from __future__ import annotations

import gc

# a young-generation pass after 100,000 net allocations instead of 700: start-up only
STARTUP_THRESHOLDS = (100_000, 50, 100)

_deferred_from: tuple[int, int, int] | None = None


def defer_collection() -> None:
    """Collect rarely from now on, until ``settle()``: call first thing in a console script."""
    global _deferred_from
    if _deferred_from is None:
        _deferred_from = gc.get_threshold()
        gc.set_threshold(*STARTUP_THRESHOLDS)


def settle() -> None:
    """A training loop starts: freeze what start-up built and restore the thresholds it had
    (a no-op unless ``defer_collection`` ran)."""
    global _deferred_from
    if _deferred_from is not None:
        gc.freeze()
        gc.set_threshold(*_deferred_from)
        _deferred_from = None


def restore(thresholds: tuple[int, int, int]) -> None:
    """Undo ``defer_collection``/``settle`` in a process that goes on (a test calling a console
    script's ``main`` in-process): nothing frozen, these thresholds, no deferral pending."""
    global _deferred_from
    _deferred_from = None
    gc.unfreeze()
    gc.set_threshold(*thresholds)
