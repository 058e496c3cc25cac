"""What the app knows about registered models, read from MLflow: versions, metrics, plots.

No Streamlit here. Everything the model page shows comes from the registry and the runs the
training flow logged (``flows/train.py``): version tags (``metric.*``, ``dataset_id``,
``evaluate_run_id``), the evaluate run's ``per_letter_<split>.json`` and confusion matrix PNG.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from tasks.core.redact import redact
from tasks.registry.models import CHAMPION, MODEL_NAME, tag_metrics, tags_under, version_by_alias
from tasks.registry.tracking import TrackingUnavailable, check_reachable

Problem = Literal["unreachable", "no_models", "no_champion", "no_version", "unloadable"]
SPLITS = ("test", "valid")
# top1_low/high: the 95% bootstrap interval over the split's images (what one image means).
OVERALL = ("map50", "map50_95", "precision", "recall", "top1", "top1_low", "top1_high")


class ModelUnavailable(RuntimeError):
    """No model can be shown; ``kind`` says why, the message says what to do.

    The message is shown on the page as it is, and names the tracking URI or echoes an MLflow
    error that may: URL credentials in it are redacted here, whoever raises it.
    """

    def __init__(self, kind: Problem, message: str) -> None:
        super().__init__(redact(message))
        self.kind = kind


@dataclass(frozen=True, slots=True)
class VersionSummary:
    """One registered version, as the selector lists it."""

    version: str
    aliases: tuple[str, ...]
    created: datetime | None

    @property
    def label(self) -> str:
        """``v3 (champion) · 2026-11-25 13:05``."""
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        when = f" · {self.created:%Y-%m-%d %H:%M}" if self.created else ""
        return f"v{self.version}{aliases}{when}"


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """A registered version with what the model page shows about it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    dataset_id: str | None
    profile: str | None
    trained_at: datetime | None
    run_id: str | None
    evaluate_run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    # Stage ("detector", "classifier") → the weights it started from, or "scratch (why)".
    started_from: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The pinned MLflow URI of this version (never a moving alias)."""
        return f"models:/{self.name}/{self.version}"

    def metric_rows(self) -> list[dict[str, Any]]:
        """One row per split (test, valid) with mAP50, mAP50-95, precision, recall, top-1."""
        rows = []
        for split in SPLITS:
            values = {key: self.metrics.get(f"{split}_{key}") for key in OVERALL}
            if any(v is not None for v in values.values()):
                rows.append({"split": split, **values})
        return rows


def check_tracking(tracking_uri: str, timeout: float = 3.0) -> None:
    """Fail fast, with advice, when the tracking store cannot hold any model yet.

    An HTTP server is probed on ``/health`` (MLflow's client would otherwise retry for
    minutes); a sqlite store that does not exist yet is not created just by looking.

    Raises:
        ModelUnavailable: ``unreachable`` or ``no_models``.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        try:
            check_reachable(tracking_uri, timeout=timeout, waits=())
        except TrackingUnavailable as error:
            raise ModelUnavailable("unreachable", str(error)) from error
        return
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute.db
        path = Path(unquote(tracking_uri.removeprefix("sqlite:///")))
        if not path.is_file():
            raise ModelUnavailable("no_models", f"There is no MLflow store at {path} yet.")


def list_versions(client: Any, name: str = MODEL_NAME) -> list[VersionSummary]:
    """All versions of ``name``, newest first (empty when the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        return []
    # Versions from a search carry no aliases on every store; the registered model has them all.
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = client.search_model_versions(f"name = '{name}'")
    summaries = [
        VersionSummary(
            str(mv.version),
            tuple(sorted(aliases.get(str(mv.version), ()))),
            _when(mv.creation_timestamp),
        )
        for mv in versions
    ]
    return sorted(summaries, key=lambda v: int(v.version), reverse=True)


def resolve(client: Any, version: str | None = None, name: str = MODEL_NAME) -> ModelDetails:
    """The chosen version, or the champion when ``version`` is None.

    Raises:
        ModelUnavailable: ``no_models``, ``no_champion`` or ``no_version``.
    """
    from mlflow.exceptions import MlflowException

    if version is None:
        mv = version_by_alias(client, CHAMPION, name)
        if mv is None:
            if list_versions(client, name):
                raise ModelUnavailable(
                    "no_champion", f"{name} has versions but none is the {CHAMPION}."
                )
            raise ModelUnavailable("no_models", f"No model named {name} is registered yet.")
    else:
        try:
            mv = client.get_model_version(name, version)
        except MlflowException as error:
            raise ModelUnavailable("no_version", f"{name} has no version {version}.") from error
    tags = dict(mv.tags or {})
    trained_at = None
    if mv.run_id:
        try:
            trained_at = _when(client.get_run(mv.run_id).info.end_time)
        except MlflowException:  # the run was deleted; the version still works
            trained_at = None
    return ModelDetails(
        name=name,
        version=str(mv.version),
        aliases=tuple(mv.aliases or ()),
        dataset_id=tags.get("dataset_id"),
        profile=tags.get("profile"),
        trained_at=trained_at or _when(mv.creation_timestamp),
        run_id=mv.run_id,
        evaluate_run_id=tags.get("evaluate_run_id"),
        metrics=tag_metrics(tags),
        started_from=tags_under(tags, "started_from."),
    )


def per_letter(client: Any, evaluate_run_id: str | None, split: str) -> list[dict[str, Any]]:
    """The per-letter rows (letter, n_boxes, present, ap50, ap50_95, top1_accuracy) of a split.

    Args:
        client: An ``MlflowClient``.
        evaluate_run_id: The version's evaluate run (:attr:`ModelDetails.evaluate_run_id`).
        split: ``test`` or ``valid``.

    Returns:
        The rows, or an empty list when the evaluate run logged none.
    """
    if not evaluate_run_id:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(evaluate_run_id, f"per_letter_{split}.json", tmp)
        except Exception:  # missing artifact: MlflowException or OSError
            return []
        return list(json.loads(Path(path).read_text()))


def confusion_png(client: Any, evaluate_run_id: str | None, split: str) -> bytes | None:
    """The confusion-matrix PNG a split's evaluation logged, or None when there is none."""
    if not evaluate_run_id:
        return None
    try:
        files = client.list_artifacts(evaluate_run_id, f"evaluation/{split}")
        png = next((f.path for f in files if f.path.endswith("confusion_matrix.png")), None)
        if png is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(evaluate_run_id, png, tmp)).read_bytes()
    except Exception:  # a missing plot must not break the page
        return None


def _when(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, UTC) if millis else None


def _fusion_figures(folder: Path) -> dict[str, float]:
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        return {}
    return dict(json.loads(meta_path.read_text()).get("fusion_figures", {}))


def landmark_misses(folder: Path) -> tuple[int, int] | None:
    """How many train and valid labelled boxes held no hand by the landmark network."""
    figures = _fusion_figures(folder)
    if "landmark_train_missing" not in figures:
        return None
    return int(figures["landmark_train_missing"]), int(figures["landmark_valid_missing"])


def fusion_rows(folder: Path) -> list[dict[str, Any]]:
    """Pixel, landmark and fused top-1 of a fused model folder (its ``metadata.json``)."""
    figures = _fusion_figures(folder)
    rows = []
    for reading in ("pixel", "landmark", "fused"):
        valid = figures.get(f"box_valid_top1_{reading}")
        shifted = figures.get(f"shifted_valid_top1_{reading}")
        if valid is not None and shifted is not None:
            rows.append({"reading": reading, "valid": valid, "shifted valid": shifted})
    return rows
