"""Training flow: train → evaluate (test and valid) → log model → register → promotion gate.

A two-stage recipe (``TrainConfig.classifier`` set) trains a one-class hand detector, then a
letter classifier on hand crops, and ships both as one model the recognizer runs.

``python -m flows.train --dataset.id ID --dataset.uri URI --profile smoke`` runs it alone; the
pipeline flow runs it after the data flow, nested under the pipeline's MLflow run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger

from flows import mlflow_runs
from flows.train_params import TrainOutcome, TrainParams
from flows.train_stages import evaluate_task, train_stages
from tasks.core.records import ModelVersion
from tasks.core.settings import get_settings, prepare_environment
from tasks.data.acquire import localize
from tasks.registry.int8_choice import int8_variant
from tasks.registry.models import (
    find_registered,
    log_model,
    model_metadata,
    recipe_id,
    register,
    version_tags,
)
from tasks.registry.promotion import (
    GATE_SPLIT,
    ImageResults,
    decide_promotion,
    score_version,
    settle_registered,
)
from tasks.registry.tracking import with_retries
from tasks.training.detector import PLACEMENT, resolve_device


@flow(name="train", log_prints=True)
def train_flow(params: TrainParams, parent_run_id: str | None = None) -> TrainOutcome:
    """Train, evaluate, register and maybe promote a detector.

    Args:
        params: Dataset, recipe and promotion gate.
        parent_run_id: MLflow run to nest under (the pipeline's), if any.

    Returns:
        The registered version, the gate's decision and the metrics.
    """
    logger = get_run_logger()
    settings = get_settings()
    prepare_environment(settings)
    client, experiment_id = mlflow_runs.connect(settings)
    config = params.recipe()
    # On Vertex AI the dataset arrives as a gs:// URI; YOLO reads a local copy.
    dataset = localize(params.dataset, settings.datasets_dir)
    recipe = recipe_id(
        dataset.id, config.model_dump(mode="json", exclude=PLACEMENT) | {"int8": params.int8}
    )
    runs_dir = settings.home / "runs"

    def scorer(what: str, out_dir: Path) -> Callable[[ModelVersion], ImageResults | None]:
        def score(registered: ModelVersion) -> ImageResults | None:
            # The paired test needs a version's results on the candidate's own images.
            try:
                device = resolve_device(config.device)
                return dict(
                    score_version(
                        registered, dataset.data_yaml, out_dir, device, settings.tracking_uri
                    )
                )
            except Exception as exc:  # an unreadable version must not lose the candidate
                logger.warning("%s v%s could not be scored: %s", what, registered.version, exc)
                return None

        return score

    unchanged_skips = params.reuse and not params.register_unchanged
    if unchanged_skips and (same := find_registered(dataset.id, recipe)) is not None:
        # A weekly retraining on unchanged data would only register a copy; a version whose
        # gate was interrupted gets its gate finished here.
        version, registered_tags = same
        settle_dir = runs_dir / "gate" / f"v{version.version}"
        decision = settle_registered(
            version, registered_tags, params.gate.alpha,
            scorer("registered", settle_dir), scorer("champion", settle_dir),
        )  # fmt: skip
        logger.info(decision.reason)
        return TrainOutcome(
            model=version,
            decision=decision,
            train_run_id=registered_tags.get("train_run_id", version.run_id or ""),
            evaluate_run_id=registered_tags.get("evaluate_run_id", ""),
            metrics=version.metrics,
        )
    if not params.reuse:  # a folder of its own, even for two runs started in the same second
        runs_dir = runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    tags = {"dataset_id": dataset.id, "profile": params.profile}

    trained = train_stages(
        client, experiment_id, dataset, config, runs_dir, parent_run_id, tags,
        {"profile": params.profile, "dataset_id": dataset.id, "dataset_uri": params.dataset.uri},
    )  # fmt: skip
    result, onnx, model, two_stage = trained.result, trained.onnx, trained.model, trained.two_stage
    train_run, extra, started_from = trained.train_run, trained.extra, trained.started_from

    eval_dir = result.run_dir / "evaluation"
    with mlflow_runs.run(client, experiment_id, "evaluate", parent_run_id, tags) as eval_run:
        reports = {
            split: evaluate_task(model, dataset, split, eval_dir, config.imgsz, config.device)
            for split in ("test", "valid")
        }
        metrics: dict[str, float] = {}
        for report in reports.values():
            mlflow_runs.log_report(client, eval_run, report)
            metrics |= report.metrics_dict()
        int8 = None
        if params.int8:
            int8, int8_metrics = int8_variant(
                onnx, dataset, reports["valid"], eval_dir, config.imgsz, two_stage
            )
            for key, value in int8_metrics.items():
                client.log_metric(eval_run, key, value)

        eval_dataset_id = dataset.parent_id or dataset.id
        meta = model_metadata(
            dataset.names, config.imgsz, dataset.id, metrics,
            eval_dataset_id=eval_dataset_id, profile=params.profile,
            started_from={stage: w.record() for stage, w in started_from.items()},
            bundle=two_stage,
        )  # fmt: skip
        model_uri = with_retries(
            lambda: log_model(train_run, result.best, onnx, meta, int8=int8, extra=extra),
            "logging the model",
        )
        tags = version_tags(
            dataset.id, params.profile, train_run, eval_run, metrics,
            eval_dataset_id=eval_dataset_id,
            started_from={stage: w.describe() for stage, w in started_from.items()},
            recipe=recipe, gated=True,
        )  # fmt: skip
        version = with_retries(lambda: register(model_uri, tags), "registering the model")
        decision = decide_promotion(
            version, reports[GATE_SPLIT].image_correct, params.gate.alpha,
            scorer("champion", eval_dir),
        )  # fmt: skip
        mlflow_runs.log_json(client, eval_run, "promotion.json", decision.model_dump())
        client.set_tag(eval_run, "promotion", decision.alias or "none")
        client.set_tag(eval_run, "model_version", version.version)
    logger.info("registered %s v%s: %s", version.name, version.version, decision.reason)
    return TrainOutcome(
        model=version.model_copy(update={"metrics": metrics}),
        decision=decision,
        train_run_id=train_run,
        evaluate_run_id=eval_run,
        metrics=metrics,
    )


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(train_flow, TrainParams, "python -m flows.train")
