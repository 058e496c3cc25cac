"""Training flow: train → evaluate (test and valid) → log model → register → promotion gate.

A two-stage recipe (``TrainConfig.classifier`` set) trains a one-class hand detector, then a
letter classifier on hand crops, and ships both as one model the recognizer runs.

``python -m flows.train --dataset.id ID --dataset.uri URI --profile smoke`` runs it alone; the
pipeline flow runs it after the data flow, nested under the pipeline's MLflow run.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger

from flows.progress import publish_summary
from flows.train_params import TrainOutcome, TrainParams
from flows.train_stages import Trained, evaluate_task, train_stages
from tasks.core.records import DatasetRef, ModelVersion
from tasks.data.acquire import localize
from tasks.evaluation.report import EvalReport
from tasks.registry import mlflow_runs
from tasks.registry.gate_lock import gate_lock
from tasks.registry.int8_choice import int8_variant
from tasks.registry.models import find_registered, recipe_id
from tasks.registry.promotion import (
    GATE_METRIC,
    GATE_SPLIT,
    PromotionDecision,
    decide_promotion,
    not_judged,
    scorer,
    settle_registered,
)
from tasks.registry.publish import model_metadata, publish_version, version_tags
from tasks.registry.tracking import Job, open_job
from tasks.training.detector import PLACEMENT, TrainConfig, resolve_device

SPLITS = ("test", "valid")  # test for the reported figures, valid for the gate


@flow(name="train", log_prints=True)
def train_flow(params: TrainParams, parent_run_id: str | None = None) -> TrainOutcome:
    """Train, evaluate, register and maybe promote a detector.

    Args:
        params: Dataset, recipe and promotion gate.
        parent_run_id: MLflow run to nest under (the pipeline's), if any.

    Returns:
        The registered version, the gate's decision and the metrics.
    """
    job = open_job()
    config = params.recipe()
    # On Vertex AI the dataset arrives as a gs:// URI; YOLO reads a local copy.
    dataset = localize(params.dataset, job.settings.datasets_dir)
    # A trial's version is not the gated training of its recipe: a later one must not skip.
    trial = {} if params.promote else {"trial": True}
    recipe = recipe_id(
        dataset.id,
        config.model_dump(mode="json", exclude=PLACEMENT) | {"int8": params.int8} | trial,
    )
    runs_dir = job.settings.home / "runs"
    unchanged_skips = params.reuse and not params.register_unchanged
    if unchanged_skips and (same := find_registered(dataset.id, recipe)) is not None:
        with gate_lock(job.settings.home):
            return _settle(job, same, params, dataset, runs_dir / "gate", config)
    if not params.reuse:  # a folder of its own, even for two runs started in the same second
        runs_dir = runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    tags = {"dataset_id": dataset.id, "profile": params.profile}
    trained = train_stages(
        job.client, job.experiment_id, dataset, config, runs_dir, parent_run_id, tags,
        {"profile": params.profile, "dataset_id": dataset.id, "dataset_uri": params.dataset.uri},
    )  # fmt: skip
    eval_dir = trained.result.run_dir / "evaluation"
    with mlflow_runs.run(
        job.client, job.experiment_id, "evaluate", parent_run_id, tags
    ) as eval_run:
        reports = _evaluate(job, eval_run, trained.model, dataset, eval_dir, config)
        metrics = {k: v for report in reports.values() for k, v in report.metrics_dict().items()}
        int8 = None
        if params.int8:
            int8, int8_metrics = int8_variant(
                trained.onnx, dataset, reports["valid"], eval_dir, config.imgsz, trained.two_stage
            )
            for key, value in int8_metrics.items():
                job.client.log_metric(eval_run, key, value)
        version = _publish(job, trained, dataset, params, config, recipe, metrics, eval_run, int8)
        decision = _gate(job, version, reports[GATE_SPLIT], params, dataset, eval_dir, config)
        mlflow_runs.log_decision(job.client, eval_run, decision)
    get_run_logger().info("registered %s v%s: %s", version.name, version.version, decision.reason)
    publish_summary(
        "training-summary", trained.stages, metrics, version, decision.reason, decision.alias
    )
    return TrainOutcome(
        model=version.model_copy(update={"metrics": metrics}),
        decision=decision,
        train_run_id=trained.train_run,
        evaluate_run_id=eval_run,
        metrics=metrics,
    )


def _evaluate(
    job: Job, run_id: str, model: Path, dataset: DatasetRef, out: Path, config: TrainConfig
) -> dict[str, EvalReport]:
    """Evaluate ``model`` on test and valid, logged to ``run_id``."""
    reports = {
        split: evaluate_task(model, dataset, split, out, config.imgsz, config.device)
        for split in SPLITS
    }
    for report in reports.values():
        mlflow_runs.log_report(job.client, run_id, report)
    return reports


def _gate(
    job: Job,
    version: ModelVersion,
    report: EvalReport,
    params: TrainParams,
    dataset: DatasetRef,
    eval_dir: Path,
    config: TrainConfig,
) -> PromotionDecision:
    """The promotion gate's decision on a new version, one gate at a time (a trial: none)."""
    alpha = params.gate.alpha
    if not params.promote:
        return not_judged(version, report.metrics_dict().get(GATE_METRIC), alpha)
    device, uri = resolve_device(config.device), job.settings.tracking_uri
    with gate_lock(job.settings.home):  # MLflow has no compare-and-set for an alias
        return decide_promotion(
            version, report.image_correct, alpha, scorer(dataset.data_yaml, eval_dir, device, uri)
        )


def _publish(
    job: Job,
    trained: Trained,
    dataset: DatasetRef,
    params: TrainParams,
    config: TrainConfig,
    recipe: str,
    metrics: dict[str, float],
    eval_run: str,
    int8: Path | None,
) -> ModelVersion:
    """Log, register and tag the trained model; the gate gives it an alias, not this."""
    eval_dataset_id = dataset.parent_id or dataset.id
    meta = model_metadata(
        dataset.names, config.imgsz, dataset.id, metrics,
        eval_dataset_id=eval_dataset_id, profile=params.profile,
        started_from={stage: w.record() for stage, w in trained.started_from.items()},
        bundle=trained.two_stage,
    )  # fmt: skip
    tags = version_tags(
        dataset.id, params.profile, trained.train_run, eval_run, metrics,
        eval_dataset_id=eval_dataset_id,
        started_from={stage: w.describe() for stage, w in trained.started_from.items()},
        recipe=recipe, gated=params.promote,
    )  # fmt: skip
    return publish_version(
        job.client, trained.train_run, trained.result.best, trained.onnx, meta, tags,
        int8=int8, extra=trained.extra,
    )  # fmt: skip


def _settle(
    job: Job,
    same: tuple[ModelVersion, dict[str, str]],
    params: TrainParams,
    dataset: DatasetRef,
    gate_dir: Path,
    config: TrainConfig,
) -> TrainOutcome:
    """The outcome when this dataset and recipe are registered already: nothing is trained.

    A weekly retraining on unchanged data would only register a copy; a version whose gate
    was interrupted gets its gate finished here.
    """
    version, tags = same
    out = gate_dir / f"v{version.version}"
    device, uri = resolve_device(config.device), job.settings.tracking_uri
    decision = settle_registered(
        version, tags, params.gate.alpha,
        scorer(dataset.data_yaml, out, device, uri, "registered"),
        scorer(dataset.data_yaml, out, device, uri),
    )  # fmt: skip
    get_run_logger().info(decision.reason)
    return TrainOutcome(
        model=version,
        decision=decision,
        train_run_id=tags.get("train_run_id", version.run_id or ""),
        evaluate_run_id=tags.get("evaluate_run_id", ""),
        metrics=version.metrics,
    )


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(train_flow, TrainParams, "python -m flows.train")
