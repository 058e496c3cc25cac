"""The MLflow run tree of a pipeline: one parent run, nested runs for data, train, evaluate.

Runs are created and logged through ``MlflowClient`` with explicit run ids, never through
mlflow's thread-local "active run": Prefect may run tasks on other threads, and the tree must
not depend on that.

Params and tags can hold URLs (a dataset source, a tracking URI), and a URL can hold a password
or a signature. Everything written through this module, or through the client :func:`connect`
returns, is passed through :func:`tasks.core.redact.redact` first.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tasks.core.redact import redact, redact_value
from tasks.core.settings import Settings
from tasks.evaluation.report import EvalReport
from tasks.registry import tracking
from tasks.training.detector import TrainResult

# MLflow reads a tracking server's credentials from these variables. Jobs on Vertex AI get no
# secrets in their plain environment: the flow fills them from Prefect Secret blocks instead.
TRACKING_SECRET_BLOCKS = {
    "MLFLOW_TRACKING_USERNAME": "mlflow-tracking-username",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-tracking-password",
    "MLFLOW_TRACKING_TOKEN": "mlflow-tracking-token",
}


def load_tracking_credentials(tracking_uri: str) -> list[str]:
    """Set MLflow's credential variables that are unset from Prefect Secret blocks, if any.

    Args:
        tracking_uri: Only an http(s) tracking server is asked for credentials.

    Returns:
        The names of the variables set (never their values).
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return []
    from prefect.blocks.system import Secret

    loaded = []
    for variable, block in TRACKING_SECRET_BLOCKS.items():
        if os.environ.get(variable):
            continue
        try:
            os.environ[variable] = str(Secret.load(block).get())
        except (ValueError, RuntimeError):
            continue  # no such block: the server needs no credentials of this kind
        loaded.append(variable)
    return loaded


class RedactingClient(MlflowClient):
    """An ``MlflowClient`` that redacts URL credentials in every param and tag it writes.

    Flows log through the client directly as well (``client.set_tag``), so redacting in the
    client, not only in this module's helpers, covers every caller.
    """

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Any:
        """``MlflowClient.create_run`` with redacted tag values."""
        tags = {k: redact_value(v) for k, v in (tags or {}).items()}
        return super().create_run(experiment_id, start_time, tags, run_name)

    def set_tag(self, run_id: str, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``MlflowClient.set_tag`` with a redacted value."""
        return super().set_tag(run_id, key, redact_value(value), *args, **kwargs)

    def log_param(self, run_id: str, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``MlflowClient.log_param`` with a redacted value."""
        return super().log_param(run_id, key, redact_value(value), *args, **kwargs)

    def log_batch(
        self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kwargs: Any
    ) -> Any:
        """``MlflowClient.log_batch`` with redacted param and tag values."""
        params = [Param(p.key, redact(p.value)) for p in params]
        tags = [RunTag(t.key, redact(t.value)) for t in tags]
        return super().log_batch(run_id, metrics, params, tags, **kwargs)

    def set_model_version_tag(
        self, name: str, version: Any = None, key: Any = None, value: Any = None, **kwargs: Any
    ) -> Any:
        """``MlflowClient.set_model_version_tag`` with a redacted value."""
        return super().set_model_version_tag(name, version, key, redact_value(value), **kwargs)


def connect(settings: Settings) -> tuple[MlflowClient, str]:
    """A redacting client for the configured tracking store, and the experiment id."""
    load_tracking_credentials(settings.tracking_uri)
    _, experiment_id = tracking.connect(
        settings.tracking_uri, settings.experiment, settings.artifact_root
    )
    uri = settings.tracking_uri
    return RedactingClient(tracking_uri=uri, registry_uri=uri), experiment_id


@contextmanager
def run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    parent_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator[str]:
    """Create a run (nested under ``parent_id``), yield its id, mark it finished or failed."""
    all_tags = {key: redact(str(value)) for key, value in (tags or {}).items()}
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
    """Log flat params (values as strings, URL credentials redacted), 100 at a time.

    Redacted here as well as in :class:`RedactingClient`: callers may pass a plain client.
    """
    # Redact before truncating, so a cut can never leave half a URL that escapes the pattern.
    items = [Param(k, redact(str(v))[:6000]) for k, v in params.items()]
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


def set_tag(client: MlflowClient, run_id: str, key: str, value: Any) -> None:
    """Set a run tag, its value as a string with URL credentials redacted."""
    client.set_tag(run_id, key, redact(str(value)))


def log_json(client: MlflowClient, run_id: str, name: str, payload: Any) -> None:
    """Log a JSON document (URL credentials redacted) as an artifact called ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(redact(json.dumps(payload, indent=2, default=str)))
        client.log_artifact(run_id, str(path))


def log_training(client: MlflowClient, run_id: str, result: TrainResult) -> None:
    """Log a finished training's plots, table, weights and throughput to ``run_id``."""
    for file in sorted(result.run_dir.glob("*")):
        if file.suffix in {".png", ".jpg", ".csv", ".yaml"}:
            client.log_artifact(run_id, str(file), "training")
    client.log_artifact(run_id, str(result.best), "weights")
    for key, value in {
        "epochs_completed": result.epochs_completed,
        "train_seconds": result.train_seconds,
        "train_images_per_second": result.images_per_second,
    }.items():
        client.log_metric(run_id, key, float(value))
    if result.transferred is not None:
        client.log_metric(run_id, "pretrained_tensors_transferred", result.transferred[0])
    set_tag(client, run_id, "resumed", result.resumed)
    # Tags, not params: a resumed training logs them again, and params are immutable.
    for key, value in result.started_from.record().items():
        set_tag(client, run_id, f"started_from.{key}", value)


def log_report(client: MlflowClient, run_id: str, report: EvalReport) -> None:
    """Log an evaluation's metrics, per-letter table and pictures to ``run_id``."""
    for key, value in report.metrics_dict().items():
        client.log_metric(run_id, key, value)
    log_json(client, run_id, f"per_letter_{report.split}.json", report.per_letter_rows())
    client.log_artifact(run_id, str(report.confusion_png), f"evaluation/{report.split}")
    client.log_artifact(run_id, str(report.samples_jpg), f"evaluation/{report.split}")
