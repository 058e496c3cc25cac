"""MLflow naming, model logging and registration.

Every trained model is logged as a pyfunc model and registered as a new version of
``asl-detector``; :mod:`tasks.registry.promotion` decides which alias it gets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any, NamedTuple

from tasks.core.records import ModelVersion

log = logging.getLogger(__name__)

MODEL_NAME = "asl-detector"
CHAMPION = "champion"
CHALLENGER = "challenger"
PERSONAL_PREFIX = "personal-"  # a learner's own model: alias personal-<learner>
ARTIFACT_NAME = "model"
RECIPE_TAG = "recipe_id"
SHA256_KEY = "sha256"  # in metadata.json: {file name: sha256} of the files logged with it
# A trained version is registered "pending" and marked "decided" once the gate recorded its
# decision; a rerun that finds it still pending (a kill or an MLflow outage between the two)
# finishes the gate instead of saying "nothing changed".
GATE_TAG = "gate"
GATE_PENDING = "pending"
GATE_DECIDED = "decided"

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


def personal_alias(learner: str) -> str:
    """The alias of ``learner``'s own model (the personalize flow registers it)."""
    return PERSONAL_PREFIX + learner


def recipe_id(dataset_id: str, recipe: Mapping[str, Any]) -> str:
    """16 hex characters naming (dataset content, recipe): what a trained model depends on.

    Args:
        dataset_id: The dataset's content id.
        recipe: The recipe as JSON-able data, without where it runs (device, workers).
    """
    payload = json.dumps([dataset_id, recipe], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def find_registered(
    dataset_id: str, recipe: str, name: str = MODEL_NAME
) -> tuple[ModelVersion, dict[str, str]] | None:
    """The newest version trained on ``dataset_id`` with recipe id ``recipe``, and its tags.

    Retraining on an unchanged dataset with an unchanged recipe would register a copy; the
    training flow asks here first.
    """
    import mlflow

    client = mlflow.MlflowClient()
    same = [
        mv
        for mv in client.search_model_versions(f"name = '{name}'")
        if mv.tags.get("dataset_id") == dataset_id and mv.tags.get(RECIPE_TAG) == recipe
    ]
    if not same:
        return None
    mv = max(same, key=lambda v: int(v.version))
    return _version(mv, name), dict(mv.tags)


def gate_pending(tags: Mapping[str, str]) -> bool:
    """Whether a version with these tags was registered but its gate never decided.

    Versions registered before the ``gate`` tag existed count as decided when the gate's
    ``promotion.reason`` is there, and as pending when it is not.
    """
    state = tags.get(GATE_TAG)
    if state is None:
        return "promotion.reason" not in tags
    return state != GATE_DECIDED


def _version(mv: Any, name: str) -> ModelVersion:
    metrics = {k[7:]: float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
    return ModelVersion(
        name=name,
        version=str(mv.version),
        aliases=tuple(mv.aliases),
        run_id=mv.run_id,
        dataset_id=mv.tags.get("dataset_id"),
        metrics=metrics,
    )


def get_version(
    alias: str, name: str = MODEL_NAME, tracking_uri: str | None = None
) -> ModelVersion | None:
    """The version holding ``alias``, or None when no version has it.

    Args:
        alias: The alias (``champion``, ``personal-<learner>``).
        name: The registered model.
        tracking_uri: The store to ask; default mlflow's process-wide one.

    Raises:
        MlflowException: Anything but "no such alias or model" (a server that is down).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        # Only "no such alias/model" means none; a server that is down must not read as
        # "no champion" (the gate would crown the candidate).
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _version(mv, name)


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


class VersionFiles(NamedTuple):
    """A registered version's files on this machine."""

    artifacts: Path  # the folder holding metadata.json, best.pt, model.onnx (classifier.*)
    model: Path  # what evaluation reads: the two-stage folder, or the detector's best.pt
    meta: dict[str, Any]  # its metadata.json


def download_version(
    version: str, tracking_uri: str, name: str = MODEL_NAME, dst: Path | None = None
) -> VersionFiles:
    """Download version ``version`` of ``name``, check its files' recorded sha256, find them.

    Args:
        version: The version number.
        tracking_uri: The MLflow store.
        name: The registered model.
        dst: Where to put the files (default: a temp folder of mlflow's own).

    Raises:
        CheckpointRefused: A file whose sha256 differs from the one its metadata records.
    """
    import mlflow

    from tasks.inference.bundle import is_two_stage
    from tasks.training.weights import enable_safe_load, verify_sha256

    # Without dst, mlflow makes a /tmp folder that nothing removes.
    folder = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{version}",
            tracking_uri=tracking_uri,
            dst_path=str(dst) if dst is not None else None,
        )
    )
    artifacts = next(folder.rglob("metadata.json")).parent
    model = artifacts if is_two_stage(artifacts) else next(folder.rglob("best.pt"))
    meta = json.loads((artifacts / "metadata.json").read_text())
    for file_name, digest in meta.get(SHA256_KEY, {}).items():
        verify_sha256(artifacts / file_name, digest)
    enable_safe_load()  # evaluation opens its best.pt with ultralytics' own loader
    return VersionFiles(artifacts, model, meta)
