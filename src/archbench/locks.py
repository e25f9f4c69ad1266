"""Lock files beside local stores (sqlite MLflow/Optuna databases, Optuna journal files), so that
several processes on one machine can share them safely."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def local_store_path(uri: str) -> Path | None:
    """The file behind ``sqlite:///…`` or ``journal:…``; None for a server (http, postgresql, …)."""
    for prefix in ("sqlite:///", "journal:"):
        if uri.startswith(prefix):
            return Path(uri.removeprefix(prefix))
    return None


@contextmanager
def lock_beside(uri: str, suffix: str, timeout: float = 300) -> Iterator[None]:
    """Hold ``<store file><suffix>`` for the block; a no-op for server stores, which a lock file
    on this machine cannot protect."""
    from filelock import FileLock

    path = local_store_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + suffix, timeout=timeout):
        yield
