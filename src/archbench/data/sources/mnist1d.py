"""MNIST-1D regenerated offline by the ``mnist1d`` package (never its download path)."""

from __future__ import annotations

from typing import Any

import numpy as np

from archbench.data.sources import Source, sha256_of
from archbench.errors import ConfigError

# the package's get_dataset_args() defaults (mnist1d 0.0.2)
DEFAULTS: dict[str, Any] = {
    "num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
    "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "seed": 42,
}


def mnist1d(cfg: dict[str, Any]) -> Source:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    unknown = set(cfg.get("generate", {})) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown mnist1d generation argument(s) {sorted(unknown)}; "
                          f"valid: {', '.join(sorted(DEFAULTS))}")
    args = {**DEFAULTS, **dict(cfg.get("generate", {}))}
    args["padding"] = list(args["padding"])
    data = make_dataset(ObjectView(dict(args)))
    length = int(args["final_seq_length"])
    x = data["x"].astype(np.float32).reshape(-1, 1, length)
    x_test = data["x_test"].astype(np.float32).reshape(-1, 1, length)
    y, y_test = data["y"].astype(np.int64), data["y_test"].astype(np.int64)
    return Source(x, y, x_test, y_test, "sequence", [1, length], [str(i) for i in range(10)],
                  {"origin": "mnist1d.data.make_dataset", "generate": args,
                   "checksum": sha256_of(x, y, x_test, y_test)})
