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
