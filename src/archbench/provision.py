"""Runs a training needs before it starts: today, the classifier whose features score a GAN.

``model.quality.classifier=auto`` trains ``model.quality.auto_model`` on the same prepared data once
(cached under ``<output_root>/quality/``) and points the config at that run directory. It is a
step of its own, called by the entry point before ``train()``, so tasks never call back into
``train()``. The DVC pipeline names the classifier stage instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from archbench.config import compose, to_dict
from archbench.train import train


def scoring_classifier(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``model.quality.classifier`` resolved to a finished run directory."""
    from omegaconf import OmegaConf

    from archbench.data.prepare import ensure_prepared

    if OmegaConf.select(cfg, "model.quality.classifier", default=None) != "auto":
        return cfg
    from archbench.tasks import load_task, task_name

    meta, _ = ensure_prepared(to_dict(cfg.data))
    # data the generator's own task refuses (a table for a GAN) is said as such, not as the
    # scoring classifier's failure to read it
    load_task(task_name(cfg.model, cfg.data, meta.task)).check(cfg, meta)
    run_dir = Path(cfg.paths.output_root) / "quality" / f"{meta.name}-{meta.checksum[7:19]}"
    run_file = run_dir / "run.json"
    if not (run_file.is_file() and json.loads(run_file.read_text()).get("status") == "finished"):
        model = str(cfg.model.quality.auto_model)
        qcfg = compose([f"data={meta.name}", f"model={model}", "resume=false", "register=false"],
                       output_dir=run_dir)
        qcfg.data = cfg.data  # the same prepared data (e.g. the same data.root)
        qcfg.paths.root, qcfg.paths.data_dir = cfg.paths.root, cfg.paths.data_dir
        qcfg.logger.tracking_uri, qcfg.logger.log_model = cfg.logger.tracking_uri, False
        qcfg.callbacks.progress_bar = "none"
        qcfg.run_name = f"{model}-{meta.name}-gan-features"
        print(f"archbench: training the {model} classifier that scores generated samples on {meta.name} "
              f"(once; cached in {run_dir})", flush=True)
        train(qcfg)
    cfg.model.quality.classifier = str(run_dir)
    return cfg
