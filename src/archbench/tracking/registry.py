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
    note: str = ""  # why the scores were not compared, when they were not


def _champion_score(client: MlflowClient, name: str, metric: str, data_checksum: str | None) -> tuple[float | None, str]:
    """The current champion's ``metric``, or None and why it cannot be compared: no champion yet,
    one trained on other data (validation scores of two datasets say nothing of each other: a
    ``data=csv`` model of another table, say), or one that did not log the metric."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, ""
    run = client.get_run(version.run_id)
    if data_checksum and run.data.tags.get("data_checksum") not in (None, data_checksum):
        return None, (f"champion v{version.version} was trained on other data, so the scores were not "
                      f"compared (name the dataset apart with data.name=…)")
    if metric not in run.data.metrics:
        return None, f"champion v{version.version} has no {metric}, so the scores were not compared"
    return run.data.metrics[metric], ""


def register_and_promote(model_uri: str, name: str, run_id: str, metric: str, mode: str) -> Promotion:
    """Register ``model_uri`` under ``name``; point ``champion`` at it if its ``metric`` is better
    than the champion's, or if the champion's cannot be compared (``_champion_score``)."""
    import mlflow

    client = MlflowClient()
    run = client.get_run(run_id)
    score = run.data.metrics[metric]
    previous, note = _champion_score(client, name, metric, run.data.tags.get("data_checksum"))
    version = mlflow.register_model(model_uri, name, tags={"source_run": run_id})
    better = previous is None or (score > previous if mode == "max" else score < previous)
    if better:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_model_version_tag(name, version.version, metric, str(score))
    if note:
        client.set_model_version_tag(name, version.version, "champion_note", note)
    return Promotion(name, str(version.version), better, score, previous, note)
