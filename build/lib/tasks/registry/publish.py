"""Publishing a trained model: log it, register a version, tag it, point an alias at it.

:func:`publish_version` is the one register step the train and personalize flows take; each
part is retried through a tracking server restart (:func:`tasks.registry.tracking.with_retries`),
as a finished training must not be lost to an outage. Which alias the gate gives a trained
version is :mod:`tasks.registry.promotion`'s decision, not this module's.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

from tasks.core.records import ModelVersion
from tasks.registry.models import (
    ARTIFACT_NAME,
    GATE_PENDING,
    GATE_TAG,
    MODEL_NAME,
    RECIPE_TAG,
    SHA256_KEY,
)
from tasks.registry.tracking import with_retries

_TASKS_PACKAGE = Path(__file__).resolve().parents[1]
_SERVING_PACKAGES = ("numpy", "pandas", "opencv-python-headless", "onnxruntime", "pydantic")


@contextmanager
def _in_run(run_id: str):
    """Make ``run_id`` the active run in this thread for mlflow's fluent API."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id, nested=active is not None):
        yield


def _requirements() -> list[str]:
    reqs = []
    for name in _SERVING_PACKAGES:
        try:
            reqs.append(f"{name}=={pkg_metadata.version(name)}")
        except pkg_metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def log_model(
    run_id: str,
    weights: Path,
    onnx: Path,
    model_metadata: dict[str, Any],
    int8: Path | None = None,
    extra: dict[str, Path] | None = None,
) -> str:
    """Log the detector as an MLflow pyfunc model in ``run_id``.

    Args:
        run_id: The MLflow run that trained the model.
        weights: The ultralytics ``.pt`` weights.
        onnx: The fp32 ONNX export the recognizer runs.
        model_metadata: Class names, imgsz, dataset id, metrics (saved as ``metadata.json``).
        int8: An int8 ONNX variant, if evaluation kept one.
        extra: More files the recognizer needs, by artifact key (a two-stage model's
            ``classifier.onnx`` and ``classifier.pt``); they land beside ``model.onnx``.

    Returns:
        The logged model's URI, for :func:`register`.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from tasks.core.files import sha256_of
    from tasks.registry.pyfunc_model import OUTPUT_COLUMNS, AslDetectorModel

    with tempfile.TemporaryDirectory() as tmp:
        files = {"onnx": onnx, "weights": weights} | ({"int8": int8} if int8 else {})
        files |= extra or {}
        # What loads it checks each file against these (a swapped best.pt is refused).
        model_metadata = model_metadata | {
            SHA256_KEY: {path.name: sha256_of(path) for path in files.values()}
        }
        meta_path = Path(tmp) / "metadata.json"
        meta_path.write_text(json.dumps(model_metadata, indent=2, default=str))
        artifacts = {"metadata": str(meta_path)} | {k: str(v) for k, v in files.items()}
        sample_out = pd.DataFrame(
            [[0, "A", 0, 0.9, 0.0, 0.0, 1.0, 1.0, ""]], columns=OUTPUT_COLUMNS
        )
        signature = infer_signature(
            pd.DataFrame({"image": ["<base64 JPEG or PNG>"]}),
            sample_out,
            params={"conf": 0.25, "iou": 0.45, "max_det": 10},
        )
        with _in_run(run_id):
            info = mlflow.pyfunc.log_model(
                name=ARTIFACT_NAME,
                python_model=AslDetectorModel(),
                artifacts=artifacts,
                signature=signature,
                pip_requirements=_requirements(),
                # The model's own code travels with it: it loads (and serves) where this
                # checkout is not installed, and an old version keeps the code it was made with.
                code_paths=[str(_TASKS_PACKAGE)],
                metadata={k: v for k, v in model_metadata.items() if k != "metrics"},
            )
    return info.model_uri


def register(model_uri: str, tags: dict[str, str], name: str = MODEL_NAME) -> ModelVersion:
    """Register ``model_uri`` as a new version of ``name`` and tag it."""
    import mlflow

    version = mlflow.register_model(model_uri, name, tags=tags)
    return ModelVersion(
        name=name,
        version=str(version.version),
        run_id=version.run_id,
        dataset_id=tags.get("dataset_id"),
    )


def model_metadata(
    names: Sequence[str],
    imgsz: int,
    dataset_id: str,
    metrics: Mapping[str, float],
    *,
    eval_dataset_id: str | None = None,
    profile: str | None = None,
    started_from: Mapping[str, Mapping[str, Any]] | None = None,
    bundle: Path | None = None,
) -> dict[str, Any]:
    """The ``metadata.json`` of a logged model (a two-stage ``bundle`` adds its own keys)."""
    meta: dict[str, Any] = {"names": list(names), "imgsz": imgsz, "dataset_id": dataset_id}
    if eval_dataset_id is not None:
        meta["eval_dataset_id"] = eval_dataset_id
    if profile is not None:
        meta["profile"] = profile
    meta["trained_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta["metrics"] = dict(metrics)
    if started_from is not None:
        meta["started_from"] = {stage: dict(record) for stage, record in started_from.items()}
    if bundle is not None:
        meta |= json.loads((bundle / "metadata.json").read_text())
    return meta


def version_tags(
    dataset_id: str,
    profile: str,
    train_run_id: str,
    evaluate_run_id: str,
    metrics: Mapping[str, float],
    *,
    eval_dataset_id: str | None = None,
    started_from: Mapping[str, str] | None = None,
    recipe: str | None = None,
    gated: bool = False,
) -> dict[str, str]:
    """The tags of a registered version, which the app's model page and the gate read.

    ``gated``: the promotion gate will judge it, so it starts ``gate: pending``.
    """
    tags = {"dataset_id": dataset_id}
    if recipe is not None:
        tags[RECIPE_TAG] = recipe
    if gated:
        tags[GATE_TAG] = GATE_PENDING
    if eval_dataset_id is not None:
        tags["eval_dataset_id"] = eval_dataset_id
    tags |= {"profile": profile, "train_run_id": train_run_id, "evaluate_run_id": evaluate_run_id}
    tags |= {f"started_from.{stage}": text for stage, text in (started_from or {}).items()}
    return tags | {f"metric.{k}": str(v) for k, v in metrics.items()}


def set_alias(client: Any, alias: str, version: str, name: str = MODEL_NAME) -> None:
    """Point ``alias`` of ``name`` at ``version`` (retried through a server restart)."""
    with_retries(
        lambda: client.set_registered_model_alias(name, alias, version), f"setting alias {alias}"
    )


def publish_version(
    client: Any,
    run_id: str,
    weights: Path,
    onnx: Path,
    meta: dict[str, Any],
    tags: dict[str, str],
    *,
    int8: Path | None = None,
    extra: dict[str, Path] | None = None,
    alias: str | None = None,
    name: str = MODEL_NAME,
) -> ModelVersion:
    """Log a trained model in ``run_id``, register it as a new version, tag it, alias it.

    Args:
        client: The flow's MLflow client (it sets the alias).
        run_id: The run that trained the model.
        weights: The ultralytics ``.pt`` weights.
        onnx: The fp32 ONNX export.
        meta: Its ``metadata.json`` (:func:`model_metadata`).
        tags: The version's tags (:func:`version_tags`).
        int8: An int8 variant evaluation kept, if any.
        extra: More files the recognizer needs (a two-stage model's).
        alias: An alias to point at the new version (a learner's); None leaves aliases to
            the promotion gate.
        name: The registered model.

    Returns:
        The registered version (with ``alias`` among its aliases if one was set).
    """
    model_uri = with_retries(
        lambda: log_model(run_id, weights, onnx, meta, int8=int8, extra=extra),
        "logging the model",
    )
    version = with_retries(lambda: register(model_uri, tags, name), "registering the model")
    if alias is None:
        return version
    set_alias(client, alias, version.version, name)
    return version.model_copy(update={"aliases": (alias,)})
