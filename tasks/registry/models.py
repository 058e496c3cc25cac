"""MLflow naming, model logging and the promotion gate.

Every trained model is registered as a new version of ``asl-detector``. The alias
``champion`` moves only when the candidate beats the current champion, on the same test
data, by a margin; otherwise the candidate gets ``challenger``. A candidate without a valid
score never moves an alias.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.core.records import ModelVersion

log = logging.getLogger(__name__)

MODEL_NAME = "asl-detector"
CHAMPION = "champion"
CHALLENGER = "challenger"
ARTIFACT_NAME = "model"

_SERVING_PACKAGES = ("numpy", "pandas", "opencv-python-headless", "onnxruntime", "pydantic")


class PromotionDecision(BaseModel):
    """What the gate decided and why; recorded on the run and the model version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    alias: str | None
    promoted: bool
    metric: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    margin: float
    reason: str


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

    from tasks.registry.pyfunc_model import OUTPUT_COLUMNS, AslDetectorModel

    with tempfile.TemporaryDirectory() as tmp:
        meta_path = Path(tmp) / "metadata.json"
        meta_path.write_text(json.dumps(model_metadata, indent=2, default=str))
        artifacts = {"metadata": str(meta_path), "onnx": str(onnx), "weights": str(weights)}
        if int8 is not None:
            artifacts["int8"] = str(int8)
        artifacts |= {key: str(path) for key, path in (extra or {}).items()}
        sample_out = pd.DataFrame([[0, "A", 0, 0.9, 0.0, 0.0, 1.0, 1.0]], columns=OUTPUT_COLUMNS)
        signature = infer_signature(
            pd.DataFrame({"image": ["<base64 JPEG or image path>"]}),
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


def get_version(alias: str, name: str = MODEL_NAME) -> ModelVersion | None:
    """The version holding ``alias``, or None when no version has it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    metrics = {k[7:]: float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
    return ModelVersion(
        name=name,
        version=str(mv.version),
        aliases=tuple(mv.aliases),
        run_id=mv.run_id,
        dataset_id=mv.tags.get("dataset_id"),
        metrics=metrics,
    )


def _valid(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


def decide_promotion(
    candidate: ModelVersion,
    candidate_score: float | None,
    eval_dataset_id: str,
    metric: str,
    margin: float,
    rescore: Callable[[ModelVersion], float],
    name: str = MODEL_NAME,
) -> PromotionDecision:
    """Move ``champion`` to the candidate only if it is better; record the decision.

    The champion's score is taken from its tags when it was evaluated on the same test
    data (``eval_dataset_id``); otherwise ``rescore`` evaluates it on that data now.

    Args:
        candidate: The freshly registered version.
        candidate_score: Its score on ``metric`` (None or NaN: evaluation failed).
        eval_dataset_id: Id of the dataset whose test split produced the score.
        metric: Name of the compared metric (e.g. ``test_map50``); higher is better.
        margin: How much the candidate must beat the champion by.
        rescore: Scores a version on the candidate's test data.
        name: Registered model name.

    Returns:
        The decision, also written as tags on the candidate version.
    """
    import mlflow

    client = mlflow.MlflowClient()
    if not _valid(candidate_score):
        decision = PromotionDecision(
            version=candidate.version,
            alias=None,
            promoted=False,
            metric=metric,
            candidate_score=None,
            margin=margin,
            reason="candidate has no valid score; aliases left as they were",
        )
        _record(client, name, decision)
        return decision

    champion = get_version(CHAMPION, name)
    champion_score: float | None = None
    if champion is not None:
        champ_mv = client.get_model_version(name, champion.version)
        same_data = champ_mv.tags.get("eval_dataset_id") == eval_dataset_id
        stored = champion.metrics.get(metric)
        champion_score = stored if same_data and _valid(stored) else float(rescore(champion))

    if champion is None:
        promoted, reason = True, "first model: becomes champion"
    elif not _valid(champion_score):
        promoted, reason = True, f"champion v{champion.version} could not be scored"
    elif candidate_score > champion_score + margin:
        promoted = True
        reason = f"{metric} {candidate_score:.4f} > champion {champion_score:.4f} + {margin}"
    else:
        promoted = False
        reason = f"{metric} {candidate_score:.4f} <= champion {champion_score:.4f} + {margin}"

    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, candidate.version)
    decision = PromotionDecision(
        version=candidate.version,
        alias=alias,
        promoted=promoted,
        metric=metric,
        candidate_score=candidate_score,
        champion_version=champion.version if champion else None,
        champion_score=champion_score if _valid(champion_score) else None,
        margin=margin,
        reason=reason,
    )
    _record(client, name, decision)
    log.info("promotion: v%s -> %s (%s)", candidate.version, alias, reason)
    return decision


def _record(client: Any, name: str, decision: PromotionDecision) -> None:
    for key, value in decision.model_dump().items():
        if value is not None:
            client.set_model_version_tag(name, decision.version, f"promotion.{key}", str(value))
