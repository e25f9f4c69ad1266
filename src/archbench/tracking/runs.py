"""Finding a training run from what a user names: an MLflow model or run URI, or its folder.
MLflow is imported by the functions that need it, so entry points stay quick to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archbench.errors import ConfigError, DataError


def source_run_id(client: Any, uri: str) -> str | None:
    """The training run behind a model URI (registered alias/version, or runs:/)."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/")[0]
    if uri.startswith("models:/"):
        name, _, ref = uri.removeprefix("models:/").partition("@")
        if ref:
            return client.get_model_version_by_alias(name, ref).run_id
        name, _, version = uri.removeprefix("models:/").partition("/")
        if name.startswith("m-") and not version:  # an MLflow 3 logged-model id
            return client.get_logged_model(name).source_run_id
        return client.get_model_version(name, version).run_id if version.isdigit() else None
    return None


def run_folder(spec: str, tracking_uri: str, setting: str) -> Path:
    """The output folder of the ``archbench-train`` run that ``spec`` names: a path as given, or a
    ``runs:/`` or ``models:/`` URI (``source_run_id``) looked up in MLflow, whose ``output_dir`` tag
    records the folder. Refusals name ``setting``, the key given."""
    if not spec.startswith(("runs:/", "models:/")):
        return Path(spec)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        run_id = source_run_id(client, spec.rstrip("/"))
        if run_id is None:
            raise ConfigError(f"{setting}={spec}: name a run, runs:/<id>, or a registered version, "
                              f"models:/<name>@<alias> or models:/<name>/<version>")
        run = client.get_run(run_id)
    except MlflowException as err:
        raise DataError(f"{setting}={spec}: not found in {tracking_uri}: {str(err).splitlines()[0]}") from None
    folder = Path(run.data.tags.get("output_dir", ""))
    if not (folder / "run.json").is_file():
        raise DataError(f"{setting}={spec}: its run folder {folder} is not on this machine (the net is "
                        f"rebuilt from the run's config.yaml and checkpoint there)")
    return folder
