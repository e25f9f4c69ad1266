"""Model Registry: register a run's model as ``archbench-<data>-<model>`` and move the
``champion`` alias only when the new version's validation metric beats the current champion's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"


def registered_name(data: str, model: str) -> str:
    return f"archbench-{data}-{model}"


@dataclass
class Promotion:
    name: str
    version: str
    promoted: bool
    score: float
    previous_score: float | None


def _champion_score(client: MlflowClient, name: str, metric: str) -> float | None:
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    run = client.get_run(version.run_id)
    return run.data.metrics.get(metric)


def register_and_promote(model_uri: str, name: str, run_id: str, metric: str, mode: str) -> Promotion:
    """Register ``model_uri`` under ``name``; point ``champion`` at it if its ``metric`` is better."""
    import mlflow

    client = MlflowClient()
    score = client.get_run(run_id).data.metrics[metric]
    previous = _champion_score(client, name, metric)
    version = mlflow.register_model(model_uri, name, tags={"source_run": run_id})
    better = previous is None or (score > previous if mode == "max" else score < previous)
    if better:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_model_version_tag(name, version.version, metric, str(score))
    return Promotion(name, str(version.version), better, score, previous)


def run_folder(spec: str, tracking_uri: str, setting: str) -> Path:
    """The output folder of the ``archbench-train`` run that ``spec`` names: a path as given, or
    ``runs:/<id>[/…]`` or ``models:/<name>@<alias>`` (the registered version's run) looked up in
    MLflow, whose ``output_dir`` tag records the folder. Refusals name ``setting``, the key given."""
    from archbench.errors import ConfigError, DataError

    if not spec.startswith(("runs:/", "models:/")):
        return Path(spec)
    client = MlflowClient(tracking_uri)
    try:
        if spec.startswith("runs:/"):
            run_id = spec.removeprefix("runs:/").strip("/").split("/")[0]
        else:
            name, _, alias = spec.removeprefix("models:/").partition("@")
            if not alias:
                raise ConfigError(f"{setting}={spec}: name a registered model by alias, "
                                  f"models:/<name>@<alias> (e.g. @{CHAMPION})")
            run_id = client.get_model_version_by_alias(name, alias).run_id
        run = client.get_run(run_id)
    except MlflowException as err:
        raise DataError(f"{setting}={spec}: not found in {tracking_uri}: {str(err).splitlines()[0]}") from None
    folder = Path(run.data.tags.get("output_dir", ""))
    if not (folder / "run.json").is_file():
        raise DataError(f"{setting}={spec}: its run folder {folder} is not on this machine (the net is "
                        f"rebuilt from the run's config.yaml and checkpoint there)")
    return folder
