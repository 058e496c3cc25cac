"""Put a trained model into an MLflow store the way the training flow does, without training.

The app tests and the browser test need "an MLflow store holding a registered champion": this
logs the given weights through :mod:`tasks.registry.models` (the same pyfunc model, the same version
tags and evaluate-run artifacts as ``flows/train.py``) in a few seconds.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.core.records import LETTERS, ModelVersion
from tasks.evaluation.report import EvalReport
from tasks.registry.models import CHAMPION, configure_mlflow, log_model, register


def register_model(
    tracking_uri: str,
    weights: Path,
    onnx: Path,
    reports: Sequence[EvalReport] = (),
    *,
    experiment: str = "app-tests",
    artifact_root: str | None = None,
    dataset_id: str = "smoke-subset",
    imgsz: int = 320,
    alias: str | None = CHAMPION,
    int8: Path | None = None,
    started_from: str = "scratch (the recipe names no pretrained weights)",
) -> ModelVersion:
    """Log ``weights`` + ``onnx`` as a new ``asl-detector`` version, with evaluation artifacts.

    Args:
        tracking_uri: The MLflow store (sqlite URI or server URL).
        weights: The ``.pt`` weights.
        onnx: Their ONNX export.
        reports: Evaluations to log on the evaluate run (metrics, per-letter JSON, plots).
        experiment: Experiment for the two runs.
        artifact_root: Artifact location for a sqlite store (a server keeps its own).
        dataset_id: Recorded as the version's dataset.
        imgsz: The model's input size.
        alias: Alias to give the version (None: none).
        int8: An int8 variant of ``onnx`` to ship with it, as the training flow does when the
            variant passes its test.
        started_from: What the detector started from, as the flow tags it.

    Returns:
        The registered version.
    """
    configure_mlflow(tracking_uri, experiment, artifact_root)
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    tags = {"dataset_id": dataset_id, "profile": "smoke"}
    train_run = client.create_run(experiment_id, run_name="train", tags=tags).info.run_id
    eval_run = client.create_run(experiment_id, run_name="evaluate", tags=tags).info.run_id
    metrics: dict[str, float] = {}
    for report in reports:
        metrics |= report.metrics_dict()
        for key, value in report.metrics_dict().items():
            client.log_metric(eval_run, key, value)
        with tempfile.TemporaryDirectory() as tmp:
            rows = Path(tmp) / f"per_letter_{report.split}.json"
            rows.write_text(json.dumps(report.per_letter_rows()))
            client.log_artifact(eval_run, str(rows))
        client.log_artifact(eval_run, str(report.confusion_png), f"evaluation/{report.split}")
    model_uri = log_model(
        train_run,
        weights,
        onnx,
        {
            "names": list(LETTERS),
            "imgsz": imgsz,
            "dataset_id": dataset_id,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metrics": metrics,
        },
        int8=int8,
    )
    for run in (train_run, eval_run):
        client.set_terminated(run, "FINISHED")
    version = register(
        model_uri,
        {
            "dataset_id": dataset_id,
            "profile": "smoke",
            "train_run_id": train_run,
            "evaluate_run_id": eval_run,
            "started_from.detector": started_from,
            **{f"metric.{k}": str(v) for k, v in metrics.items()},
        },
    )
    if alias is not None:
        client.set_registered_model_alias(version.name, alias, version.version)
    return version
