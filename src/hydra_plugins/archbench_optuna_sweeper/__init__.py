"""Hydra sweeper ``archbench_optuna``: Optuna ≥ 4 studies behind ``archbench-train -m``."""
