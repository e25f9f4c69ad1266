"""Optuna sweeps driven by Hydra multirun (the sweeper plugin lives in ``hydra_plugins``)."""
