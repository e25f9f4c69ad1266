"""Shared fixtures: real configs from conf/, with data, MLflow store and outputs in temp dirs."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"
BIN = Path(sys.executable).parent

# every test talks to its own stores, never the user's
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ["ARCHBENCH_ROOT"] = str(REPO)
# under pytest-xdist (make test: one worker per core) every worker, and every process it starts,
# gets one torch thread: two trainings with 2 threads each on 2 cores slow each other many times over
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI; keep it out of later tests and
    the subprocesses they start."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared data shared by the whole session (prepared on first use by each test)."""
    return tmp_path_factory.mktemp("prepared")


@pytest.fixture
def bench_module(monkeypatch):
    """``load(name)``: a fresh import of the script ``bench/<name>.py`` (bench/ on sys.path, as when
    it runs, so its own imports of common and its siblings work)."""
    import importlib

    def load(name: str):
        monkeypatch.syspath_prepend(str(REPO / "bench"))
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


@pytest.fixture
def make_cfg(tmp_path: Path, data_root: Path):
    """Compose the real config with tiny-budget overrides and temp stores. No model is logged to
    MLflow (its export is most of a tiny run's cost) unless a test asks: ``logger.log_model=true``."""
    from archbench.config import compose

    def make(*overrides: str, output: str = "run"):
        return compose(
            [
                f"paths.data_dir={data_root}",
                f"paths.output_root={tmp_path / 'outputs'}",
                f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                "callbacks.progress_bar=none",
                "trainer.max_epochs=2",
                "trainer.enable_model_summary=false",
                "logger.log_model=false",
                *overrides,
            ],
            output_dir=tmp_path / output,
        )

    return make


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run an installed console script; returns the CompletedProcess."""
    import subprocess

    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def call_cli(*args: str, env: dict | None = None):
    """A console script's ``main`` in this process, its stdout/stderr captured and its exit status
    returned as a CompletedProcess: the same program ``run_cli`` starts, without paying torch's,
    Lightning's and MLflow's imports again. For what a process adds (a kill, the output of
    dependencies' own log handlers, a clean interpreter) use ``run_cli``; every program keeps
    such tests. ``sys.argv``, Hydra's global state, the root logger, the environment and torch's
    thread count are restored afterwards."""
    import contextlib
    import gc
    import importlib
    import io
    import logging
    import subprocess

    import torch
    from hydra.core.global_hydra import GlobalHydra

    from archbench import gc_policy
    from archbench.cli.entry import PROGRAMS, exit_status

    out, err = io.StringIO(), io.StringIO()
    main = importlib.import_module(PROGRAMS[args[0]]).main
    saved_env, saved_argv, threads = dict(os.environ), sys.argv, torch.get_num_threads()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.update(env or {})
    sys.argv = list(args)  # every main() reads its arguments from sys.argv, as its script does
    collector = gc.get_threshold()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = exit_status(main)
    finally:
        gc_policy.restore(collector)  # a training main() defers and settles the collector
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        GlobalHydra.instance().clear()
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def repickled(module):
    """``module`` through ``torch.save`` and ``torch.load`` (whole-module pickling, as logged models
    are), in eval mode: how a net saved by older code comes back."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False).eval()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: a tracking server or database that is down."""
    return free_port()


@contextlib.contextmanager
def http_server(command: list[str], probe: str, env: dict | None = None, seconds: float = 120):
    """Start ``command`` (a server on loopback) in its own process group, wait until ``probe`` (a
    URL) answers, yield the process, and stop the whole group afterwards (``make ui`` runs its
    server as a child). A server that exits or stays silent fails the test with its stderr."""
    import signal
    import subprocess
    import time
    import urllib.request

    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        deadline = time.time() + seconds
        while True:
            try:
                urllib.request.urlopen(probe, timeout=5).close()
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    pytest.fail(f"{Path(command[0]).name} did not start ({probe}): {process.stderr.read()[-3000:]}")
                time.sleep(0.3)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow (end-to-end) tests first, the DVC pipeline test before them all: under pytest-xdist
    the longest tests then start at once instead of leaving one worker busy at the end."""
    def rank(item: pytest.Item) -> int:
        if item.path.name == "test_pipeline.py" and "dvc_repro" in item.name:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: each group keeps its file order
