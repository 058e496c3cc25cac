"""The one MLflow set-up: where the tracking store and registry are, and the experiment.

The flows, the app and the tests point MLflow at the store through here; nothing else sets
MLflow's URIs.
"""

from __future__ import annotations

from typing import Any


def configure_mlflow(tracking_uri: str, experiment: str, artifact_root: str | None) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists.

    The experiment gets an explicit artifact location: MLflow 3 with a sqlite store would
    otherwise put artifacts relative to the working directory.

    Returns:
        The experiment id.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment)
    if existing is not None:
        return existing.experiment_id
    location = f"{artifact_root.rstrip('/')}/{experiment}" if artifact_root else None
    return client.create_experiment(experiment, artifact_location=location)


def client_for(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for the tracking store and its registry (the same URI).

    Also points mlflow's process-wide URIs there: ``Recognizer.load`` downloads ``models:/``
    URIs through them.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def connect(tracking_uri: str, experiment: str, artifact_root: str | None) -> tuple[Any, str]:
    """A client for the tracking store, and the id of ``experiment`` (created if needed)."""
    experiment_id = configure_mlflow(tracking_uri, experiment, artifact_root)
    return client_for(tracking_uri), experiment_id
