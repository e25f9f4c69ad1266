"""Lightning's MLflow logger, sending metrics in batches.

Lightning's ``MLFlowLogger`` sends each ``log_metrics`` call to the store at once: a small
training's three calls an epoch (learning rate, validation, training means) were 81 sqlite
transactions, ~0.5 s of a 6 s run (bench/startup.py). This logger keeps the metrics and sends
them in one ``log_batch`` when ``flush_seconds`` have passed since the last one, and when
Lightning finalizes the logger (after fit and after test, on success or failure). MLflow's own
asynchronous mode (``synchronous=False``) was slower here: one thread-pool write per call, and
~2 s more per run unless ``MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS`` is set process-wide.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from lightning_utilities.core.rank_zero import rank_zero_only
from mlflow.entities import Metric
from pytorch_lightning.loggers import MLFlowLogger

# MLflow's limit on the metrics of one log_batch call
MAX_METRICS_PER_BATCH = 1000
# what Lightning's logger strips from metric names (MLflow refuses other characters)
REFUSED_IN_NAMES = re.compile(r"[^a-zA-Z0-9_/. -]+")


class BatchingMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` whose metrics reach MLflow at most ``flush_seconds`` late, in batches
    (0: every call at once, as Lightning's). The MLflow UI stays live; a run killed with
    SIGKILL loses at most its last ``flush_seconds`` of metrics."""

    def __init__(self, *args, flush_seconds: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._pending: list = []
        self._flushed_at = time.monotonic()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        stamp = int(time.time() * 1000)
        prefix = f"{self._prefix}{self.LOGGER_JOIN_CHAR}" if self._prefix else ""
        self._pending += [Metric(key=REFUSED_IN_NAMES.sub("", prefix + key), value=float(value), timestamp=stamp,
                                 step=step or 0) for key, value in metrics.items()]
        if time.monotonic() - self._flushed_at >= self.flush_seconds:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Send the metrics kept so far."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
            self.experiment.log_batch(run_id=self.run_id, metrics=pending[start:start + MAX_METRICS_PER_BATCH],
                                     **self._log_batch_kwargs)
        self._flushed_at = time.monotonic()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
        super().finalize(status)
