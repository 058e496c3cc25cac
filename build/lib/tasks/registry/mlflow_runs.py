"""The MLflow run tree of a pipeline: one parent run, nested runs for data, train, evaluate.

Runs are created and logged through ``MlflowClient`` with explicit run ids, never through
mlflow's thread-local "active run": Prefect may run tasks on other threads, and the tree must
not depend on that.

Params and tags can hold URLs (a dataset source, a tracking URI), and a URL can hold a password
or a signature. Everything written through this module is passed through
:func:`tasks.core.redact.redact` first, as is everything written through the client
:func:`tasks.registry.tracking.connect` returns.
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
from pydantic import BaseModel

from tasks.core.records import DatasetRef
from tasks.core.redact import redact
from tasks.evaluation.report import EvalReport
from tasks.registry.promotion import PromotionDecision
from tasks.training.resume import TrainResult


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


def log_dataset(
    client: MlflowClient, run_id: str, dataset: DatasetRef, source: str, augment: BaseModel
) -> None:
    """Log what the data flow built: its source, id, augmentation, counts and preview."""
    log_params(
        client,
        run_id,
        {"source": source, "dataset_id": dataset.id}
        | flatten("augment", augment.model_dump(mode="json")),
    )
    for split, count in dataset.counts.items():
        client.log_metric(run_id, f"images_{split}", count)
    set_tag(client, run_id, "dataset_id", dataset.id)
    if (preview := dataset.local_path / "preview.jpg").exists():
        client.log_artifact(run_id, str(preview), "dataset")


def log_decision(client: MlflowClient, run_id: str, decision: PromotionDecision) -> None:
    """Record the promotion gate's decision on the evaluate run (``promotion.json``, tags)."""
    log_json(client, run_id, "promotion.json", decision.model_dump())
    client.set_tag(run_id, "promotion", decision.alias or "none")
    client.set_tag(run_id, "model_version", decision.version)


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
