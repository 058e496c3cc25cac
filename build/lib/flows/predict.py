"""Predict flow: recognize letters in folders, globs or lists of images with a registered model.

``python -m flows.predict --inputs '["photos/", "more/*.jpg"]' --annotate true``
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.settings import get_settings, prepare_environment
from tasks.inference.batch_predict import PredictReport, expand_inputs, predict_images
from tasks.inference.recognizer import Recognizer
from tasks.registry.models import CHAMPION, MODEL_NAME
from tasks.registry.tracking import open_job


class PredictParams(BaseModel):
    """Which images, which model, where to write."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[str] = Field(
        min_length=1, description="Folders, globs, image files or URIs (file://, gs://, https://)."
    )
    model: str = Field(
        default=f"models:/{MODEL_NAME}@{CHAMPION}",
        description="MLflow model URI (alias, version or run) or a local .onnx/.pt/model folder.",
    )
    output: Path | None = Field(
        default=None, description="Output folder; default <home>/predictions/<timestamp>."
    )
    conf: float = Field(
        default=0.25, gt=0, le=1, description="Minimum confidence (above 0: 0 keeps every anchor)."
    )
    annotate: bool = Field(default=False, description="Also write annotated images.")


@task(cache_policy=NO_CACHE)
def predict_task(params: PredictParams, out_dir: Path, cache_dir: Path) -> PredictReport:
    """Load the recognizer once and predict every image."""
    recognizer = Recognizer.load(params.model, cache_dir=cache_dir)
    images, missing = expand_inputs(params.inputs)
    return predict_images(recognizer, images, out_dir, params.conf, params.annotate, missing)


@flow(name="predict", log_prints=True)
def predict_flow(params: PredictParams) -> PredictReport:
    """Recognize letters in a batch of images; unreadable ones are skipped and reported.

    Args:
        params: Inputs, model URI, output folder, threshold.

    Returns:
        The report with counts per letter and the files written.
    """
    if "://" in params.model or params.model.startswith(("models:/", "runs:/")):
        # As every flow opens MLflow: credentials from Secret blocks, a reachability check.
        settings = open_job().settings
    else:
        settings = get_settings()
        prepare_environment(settings)
    out_dir = params.output or settings.home / "predictions" / time.strftime("%Y%m%d-%H%M%S")
    report = predict_task(params, out_dir, settings.home / "models")
    create_table_artifact(
        key="predictions-per-letter",
        table=[{"letter": k, "detections": v} for k, v in report.letter_counts.items()],
        description=f"{report.n_images} images, {len(report.skipped)} skipped",
    )
    logger = get_run_logger()
    for skip in report.skipped:
        logger.warning("skipped %s: %s", skip.image, skip.reason)
    logger.info(
        "%d images, %d detections, %d skipped; wrote %s",
        report.n_images,
        report.n_detections,
        len(report.skipped),
        report.csv_path,
    )
    return report


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(predict_flow, PredictParams, "python -m flows.predict")
