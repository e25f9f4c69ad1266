"""What every benchmark shares: where the project, the venv's commands, the shared data sets and the
reports live, the environment the commands run in, and how a report is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # archbench-*, dvc: the venv running the benchmark
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
REPORTS = ROOT / "reports" / "benchmarks"


def venv_env(**extra: str) -> dict[str, str]:
    """This process's environment with the venv's commands first on PATH (DVC stages call them)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def timed_train(args: list[str], store: Path, **env: str) -> float:
    """Seconds from command to exit of ``archbench-train ARGS`` tracked in the sqlite store ``store``
    (``env``: more environment variables); a failure stops the benchmark with the command's last error lines."""
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "archbench-train"), *args], cwd=ROOT, capture_output=True, text=True,
                            env=venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{store}", **env))
    if result.returncode:
        raise SystemExit(f"archbench-train {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def write_report(name: str, record: dict, markdown: str, out: Path = REPORTS) -> None:
    """``<out>/<name>.json`` (the raw figures) and ``<out>/<name>.md`` (the table), echoed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    print(markdown)
