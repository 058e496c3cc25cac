"""The registry's names and how to read it: aliases, versions, their tags and files.

Every trained model is a version of ``asl-detector`` (:mod:`tasks.registry.publish` logs and
registers it; :mod:`tasks.registry.promotion` decides which alias it gets). Everything that
asks "which version holds this alias" or "what metrics does this version carry" asks here:
:func:`version_by_alias` and :func:`tag_metrics`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
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
# What MLflow answers when an alias or a model does not exist (a sqlite store and a server
# differ); anything else, a server that is down, is an error, never "no champion".
_NO_SUCH = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


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


def tags_under(tags: Mapping[str, str], prefix: str) -> dict[str, str]:
    """A version's tags named ``<prefix><key>``, by key (``started_from.`` → detector...)."""
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}


def tag_metrics(tags: Mapping[str, str]) -> dict[str, float]:
    """The metrics a version carries in its ``metric.<name>`` tags, by name."""
    return {k: float(v) for k, v in tags_under(tags, "metric.").items()}


def _version(mv: Any, name: str) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=str(mv.version),
        aliases=tuple(mv.aliases or ()),
        run_id=mv.run_id,
        dataset_id=mv.tags.get("dataset_id"),
        metrics=tag_metrics(mv.tags),
    )


def version_by_alias(client: Any, alias: str, name: str = MODEL_NAME) -> Any | None:
    """MLflow's model version holding ``alias``, or None when no version has it.

    Args:
        client: An ``MlflowClient``.
        alias: The alias (``champion``, ``personal-<learner>``).
        name: The registered model.

    Raises:
        MlflowException: Anything but "no such alias or model" (a server that is down must
            not read as "no champion": the gate would crown the candidate).
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in _NO_SUCH:
            return None
        raise


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

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = version_by_alias(client, alias, name)
    return None if mv is None else _version(mv, name)


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
