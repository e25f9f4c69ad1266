"""What a run prints: dependency chatter hidden by default (``-v`` brings it back)."""

from __future__ import annotations

# Lightning's INFO lines (GPU/TPU availability, tips, "Restoring states ...") come from these
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_dependencies(verbose: bool) -> None:
    """Hide dependency chatter a user cannot act on (precise filters, not a global silence);
    ``-v`` / ``hydra.verbose=true`` keeps all of it."""
    import logging
    import warnings

    if verbose:
        return
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # on a resumed run the checkpoint folder is meant to hold the checkpoints being continued
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # archbench logs training metrics per epoch (tasks/epoch_metrics.py), never per step: a small
    # table's few batches per epoch lose nothing
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval")
    # archbench's deliberate choices, each warned about on every run by a dependency:
    # a GAN's frozen scoring classifier stays in eval mode; recurrent nets' flat weights during
    # pt2 export; language models logged in the pickle format (their generate() is Python code)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    warnings.filterwarnings("ignore", message=r"The tensor attributes self\.net\.\w+\._flat_weights")
    logging.getLogger("mlflow.pytorch").addFilter(
        lambda record: not record.getMessage().startswith("Saving pytorch model by Pickle"))
    # optimizer.compile (tasks/optim.py): the learning rate lives in a tensor, which Lightning's
    # LearningRateMonitor copies with torch.tensor() (the logged value is right), and dynamo leaves
    # the profiler's record_function out of the compiled update, as it says at each compilation
    warnings.filterwarnings("ignore", message=r"To copy construct from a tensor", module=r"pytorch_lightning\.callbacks\.lr_monitor")
    logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(
        lambda record: not record.getMessage().startswith("Profiler record function"))
    # archbench records heartbeats itself, outside Study.optimize, on purpose (sweep/study.py)
    warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed to be used with Study.optimize")
    # Optuna's ExperimentalWarning, by its message: importing optuna to name the class would cost
    # every plain training ~0.2 s
    for experimental in (r".* is experimental \(supported from v", r"Argument ``\w+`` is an experimental feature"):
        warnings.filterwarnings("ignore", message=experimental)
