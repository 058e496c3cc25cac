"""The MLflow run tree of a pipeline: one parent run, nested runs for data, train, evaluate.

Runs are created and logged through ``MlflowClient`` with explicit run ids, never through
mlflow's thread-local "active run": Prefect may run tasks on other threads, and the tree must
not depend on that.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tasks.registry import configure_mlflow
from tasks.settings import Settings


def connect(settings: Settings) -> tuple[MlflowClient, str]:
    """A client for the configured tracking store and the experiment id."""
    experiment_id = configure_mlflow(
        settings.tracking_uri, settings.experiment, settings.artifact_root
    )
    return MlflowClient(settings.tracking_uri), experiment_id


@contextmanager
def run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    parent_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator[str]:
    """Create a run (nested under ``parent_id``), yield its id, mark it finished or failed."""
    all_tags = dict(tags or {})
    if parent_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
    created = client.create_run(experiment_id, run_name=name, tags=all_tags)
    run_id = created.info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Log flat params (values as strings), 100 at a time as MLflow requires."""
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Flatten a nested dict into dotted keys: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


def log_json(client: MlflowClient, run_id: str, name: str, payload: Any) -> None:
    """Log a JSON document as an artifact called ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, default=str))
        client.log_artifact(run_id, str(path))
