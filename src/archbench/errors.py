"""Errors that archbench reports to the user as one clear line (exit code 2)."""


class ArchbenchError(Exception):
    """A problem the user can fix: bad config, missing or corrupt data, impossible combination."""


class ConfigError(ArchbenchError):
    """A config value that cannot work."""


class DataError(ArchbenchError):
    """Missing, unreadable or corrupt data."""


class IncompatibleError(ArchbenchError):
    """A model that cannot handle the dataset's input (e.g. a CNN on tabular data)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class RunStopped(Exception):
    """A callback ended the run early on purpose (e.g. a sweep's pruner): not a failure.

    The MLflow run ends KILLED with ``tags`` set; whoever started the run decides what it means.
    """

    def __init__(self, message: str, tags: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.tags = dict(tags or {})


class Terminated(KeyboardInterrupt):
    """SIGTERM to the parent of a multirun whose jobs run in worker processes (joblib), raised in
    its main thread as Ctrl-C's interrupt is: the launcher then stops its workers (joblib kills
    them), instead of the parent dying alone and leaving them training, and their runs end KILLED.
    Before, the workers went on training as orphans."""

    signal_number = 15  # signal.SIGTERM


class RunInterrupted(KeyboardInterrupt):
    """Training stopped by a signal: Ctrl-C's SIGINT, or SIGTERM (``kill``, a container stopping, a
    scheduler's preemption). The MLflow run ends KILLED; the command exits 128 + the signal number,
    as a shell reports a process a signal ended."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = int(signal_number)
        self.exit_code = 128 + self.signal_number
