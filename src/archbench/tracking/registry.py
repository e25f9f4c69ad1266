"""Model Registry: register a run's model as ``archbench-<data>-<model>`` and move the
``champion`` alias only when the new version's validation metric beats the current champion's."""

from __future__ import annotations

from dataclasses import dataclass

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

