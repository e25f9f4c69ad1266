"""Where the project lives: the directory holding conf/ (found from the working directory)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The nearest directory at or above the working directory that has conf/config.yaml.

    ``ARCHBENCH_ROOT`` overrides; an editable install falls back to the checkout it came from.
    """
    env = os.environ.get("ARCHBENCH_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "conf" / "config.yaml").is_file():
            return candidate
    return _PACKAGE_ROOT


def conf_dir() -> Path:
    return project_root() / "conf"
