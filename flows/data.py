"""Data flow: acquire → validate → augment, returning a content-addressed ``DatasetRef``.

Run it without a Prefect server: ``python -m flows.data --source ../shared/datasets/asl-letters``.
A second run with the same source and augmentation config hits Prefect's cache and skips
all three stages.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, ConfigDict, Field

from flows.progress import Steps
from tasks.core.records import SPLITS, DatasetRef
from tasks.core.redact import redact
from tasks.core.settings import ROBOFLOW_DEFAULT, get_settings, prepare_environment
from tasks.data.acquire import AcquireError, acquire, parse_source
from tasks.data.augment import AugmentConfig, augment_dataset, augmented_id
from tasks.data.preview import preview_grid
from tasks.data.remote import fingerprint as remote_fingerprint
from tasks.data.validate import DatasetInvalid, validate_dataset

log = logging.getLogger(__name__)

ROBOFLOW_SECRET_BLOCK = "roboflow-api-key"
REPORT_NAME = "validation.json"
PREVIEW_NAME = "preview.jpg"


class DataParams(BaseModel):
    """Where the dataset comes from and how to augment it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = Field(
        default=None,
        description="Local export folder or .zip, a URL of either (gs://bucket/asl.zip), or "
        "roboflow:<workspace>/<project>/<version>; default: FINGERSPELL_DATASET.",
    )
    allow_leakage: bool = Field(
        default=False, description="Report duplicate images across splits as a warning, not error."
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


def _source_fingerprint(source: str) -> str:
    """A cheap fingerprint of a source: names, sizes and mtimes, not file contents."""
    parsed = parse_source(source)
    if parsed.kind == "roboflow":
        return source  # a Roboflow version is immutable
    if parsed.kind == "url":
        return remote_fingerprint(source)
    path = Path(source).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path.parent)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _key_acquire(context: Any, params: dict[str, Any]) -> str:
    return (
        "acquire-"
        + hashlib.sha256(
            f"{_source_fingerprint(params['source'])}|{params['datasets_dir']}".encode()
        ).hexdigest()
    )


def _augment_target(dataset: DatasetRef, config: AugmentConfig, datasets_dir: Path) -> Path:
    return datasets_dir / "augmented" / augmented_id(dataset.id, config)


def _key_augment(context: Any, params: dict[str, Any]) -> str:
    target = _augment_target(params["dataset"], params["config"], Path(params["datasets_dir"]))
    return f"augment-{target}"


def roboflow_key() -> str | None:
    """The Roboflow key from the environment, else from a Prefect Secret block."""
    key = get_settings().roboflow_key()
    if key:
        return key
    try:
        from prefect.blocks.system import Secret

        return Secret.load(ROBOFLOW_SECRET_BLOCK).get()
    except (ValueError, RuntimeError):
        return None


@task(cache_key_fn=_key_acquire, persist_result=True)
def acquire_task(source: str, datasets_dir: Path) -> DatasetRef:
    """Copy the source into the data home under its content id."""
    try:
        key = roboflow_key() if parse_source(source).kind == "roboflow" else None
        return acquire(source, datasets_dir, api_key=key)
    except Exception as exc:
        # Prefect keeps a failed task's exception (state message, persisted result), where the
        # log filter cannot reach: a signed source URL in the message is redacted first, and
        # the chain, whose causes name the URL too, is dropped.
        message = str(exc)
        if redact(message) == message:
            raise
        try:
            clean = type(exc)(redact(message))
        except Exception:
            clean = AcquireError(redact(message))
        raise clean from None


def _key_validate(context: Any, params: dict[str, Any]) -> str:
    # Content-addressed: the same id is the same files, so one validation holds forever.
    return f"validate-{params['dataset'].uri}-{params['allow_leakage']}"


@task(cache_key_fn=_key_validate, persist_result=True)
def validate_task(dataset: DatasetRef, allow_leakage: bool) -> DatasetRef:
    """Validate every image and label; publish the report; fail listing every error."""
    report = validate_dataset(dataset.local_path, dataset.names, allow_leakage=allow_leakage)
    report.write_json(dataset.local_path / REPORT_NAME)
    create_table_artifact(
        key="dataset-classes",
        table=report.class_table(),
        description=f"Boxes per split and letter, dataset {dataset.id}",
    )
    if not report.ok:
        raise DatasetInvalid(report)
    get_run_logger().info("dataset %s valid: %s", dataset.id, dataset.counts)
    return dataset


@task(cache_key_fn=_key_augment, persist_result=True)
def augment_task(dataset: DatasetRef, config: AugmentConfig, datasets_dir: Path) -> DatasetRef:
    """Write the augmented copy of a validated dataset and its preview grid."""
    target = _augment_target(dataset, config, datasets_dir)
    new_id = target.name
    counts = augment_dataset(dataset.local_path, target, config, dataset.names)
    preview = target / PREVIEW_NAME
    if not preview.exists():
        preview_grid(target, dataset.names, preview, seed=config.seed)
    create_markdown_artifact(
        key="augmentation-preview",
        markdown=f"Augmented dataset `{new_id}` ({counts}); preview grid: `{preview}`",
    )
    return DatasetRef(
        id=new_id,
        uri=target.as_uri(),
        names=dataset.names,
        counts={split: int(counts.get(split, 0)) for split in SPLITS},
        parent_id=dataset.id,
    )


@flow(name="data", log_prints=True)
def data_flow(params: DataParams | None = None) -> DatasetRef:
    """Acquire, validate and augment the dataset; return where the result lives.

    Args:
        params: Source and augmentation settings (defaults come from settings).

    Returns:
        The augmented dataset's record; it is immutable once written.
    """
    params = params or DataParams()
    settings = get_settings()
    prepare_environment(settings)
    source = params.source or settings.dataset
    if not source and roboflow_key():
        source = ROBOFLOW_DEFAULT  # the public export, for a user who only set a key
    if not source:
        raise ValueError(
            "no dataset source: set FINGERSPELL_DATASET to a YOLO export (folder or .zip, local "
            "or a gs:// URL) or to roboflow:<workspace>/<project>/<version> with "
            "ROBOFLOW_API_KEY set"
        )
    datasets_dir = settings.datasets_dir
    steps = Steps("progress-data", ("acquire", "validate", "augment"))  # the Prefect UI's bar
    # The cache remembers results, not folders: if a cached folder was deleted, redo the step.
    raw = acquire_task(source, datasets_dir)
    if not raw.data_yaml.exists():
        raw = acquire_task.with_options(refresh_cache=True)(source, datasets_dir)
    steps.begin("validate")
    checked = validate_task(raw, params.allow_leakage)
    steps.begin("augment")
    augment = augment_task
    if not (_augment_target(checked, params.augment, datasets_dir) / "data.yaml").exists():
        augment = augment_task.with_options(refresh_cache=True)
    dataset = augment(checked, params.augment, datasets_dir)
    steps.done()
    return dataset


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(data_flow, DataParams, prog="python -m flows.data")
