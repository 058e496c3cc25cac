"""Put a trained model into an MLflow store the way the training flow does, without training.

The app tests and the browser test need "an MLflow store holding a registered champion": this
logs the given weights through :mod:`tasks.registry.models` (the same pyfunc model, the same version
tags and evaluate-run artifacts as ``flows/train.py``) in a few seconds.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tasks.core.records import LETTERS, ModelVersion
from tasks.evaluation.report import EvalReport
from tasks.registry.models import CHAMPION
from tasks.registry.publish import log_model, model_metadata, register, version_tags
from tasks.registry.tracking import connect


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
    client, experiment_id = connect(tracking_uri, experiment, artifact_root)
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
    meta = model_metadata(LETTERS, imgsz, dataset_id, metrics, profile="smoke")
    model_uri = log_model(train_run, weights, onnx, meta, int8=int8)
    for run in (train_run, eval_run):
        client.set_terminated(run, "FINISHED")
    tags = version_tags(
        dataset_id, "smoke", train_run, eval_run, metrics, started_from={"detector": started_from}
    )
    version = register(model_uri, tags)
    if alias is not None:
        client.set_registered_model_alias(version.name, alias, version.version)
    return version
