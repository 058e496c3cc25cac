"""Training flow: train → evaluate (test and valid) → log model → register → promotion gate.

A two-stage recipe (``TrainConfig.classifier`` set) trains a one-class hand detector, then a
letter classifier on hand crops, and ships both as one model the recognizer runs.

``python -m flows.train --dataset.id ID --dataset.uri URI --profile smoke`` runs it alone; the
pipeline flow runs it after the data flow, nested under the pipeline's MLflow run.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from flows import mlflow_runs
from flows.train_params import TrainOutcome, TrainParams
from tasks.core.records import DatasetRef, ModelVersion
from tasks.core.settings import get_settings, prepare_environment
from tasks.data.acquire import localize
from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.report import EvalReport
from tasks.inference.bundle import assemble, bundle_artifacts
from tasks.inference.export import export_onnx
from tasks.registry.int8_choice import int8_variant
from tasks.registry.models import (
    find_registered,
    log_model,
    model_metadata,
    recipe_id,
    register,
    version_tags,
)
from tasks.registry.promotion import GATE_SPLIT, decide_promotion, rescore_champion, unchanged
from tasks.registry.tracking import with_retries
from tasks.training.classifier import ClassifierConfig, train_classifier
from tasks.training.detector import PLACEMENT, TrainConfig, TrainResult, resolve_device, train


@task(cache_policy=NO_CACHE, retries=1)
def train_task(
    dataset: DatasetRef,
    config: TrainConfig,
    runs_dir: Path,
    run_id: str,
    weights_dir: Path | None = None,
) -> TrainResult:
    """Train, resuming an interrupted run of the same dataset and recipe."""
    return train(
        dataset.data_yaml, dataset.id, config, runs_dir, mlflow_run_id=run_id,
        weights_dir=weights_dir,
    )  # fmt: skip


@task(cache_policy=NO_CACHE, retries=1)
def classifier_task(
    dataset: DatasetRef,
    config: ClassifierConfig,
    runs_dir: Path,
    device: str,
    run_id: str,
    tracking_uri: str,
    weights_dir: Path | None = None,
) -> TrainResult:
    """Train the letter classifier of a two-stage recipe on the dataset's hand crops.

    It runs in a process of its own so that it can train while the detector does: on a CPU,
    ultralytics trains with ``cores - 1`` threads and no loader workers, so one training
    leaves a 2-core machine half idle. Two side by side use both cores.
    """
    spawn = multiprocessing.get_context("spawn")  # a fork of a threaded process may deadlock
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        job = pool.submit(
            train_classifier,
            dataset.local_path,
            dataset.id,
            config,
            runs_dir,
            resolve_device(device),
            run_id,
            tracking_uri,
            weights_dir,
        )
        return job.result()


@task(cache_policy=NO_CACHE)
def evaluate_task(
    weights: Path, dataset: DatasetRef, split: str, out_dir: Path, imgsz: int, device: str
) -> EvalReport:
    """Evaluate on one split and publish the report as Prefect artifacts."""
    report = evaluate(
        weights, dataset.data_yaml, split, out_dir, imgsz=imgsz, device=resolve_device(device)
    )
    create_markdown_artifact(key=f"evaluation-{split}", markdown=report.to_markdown())
    create_table_artifact(key=f"per-letter-{split}", table=report.per_letter_rows())
    return report


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
    unchanged_skips = params.reuse and not params.register_unchanged
    if unchanged_skips and (same := find_registered(dataset.id, recipe)) is not None:
        # A weekly retraining on unchanged data would only register a copy.
        version, registered_tags = same
        decision = unchanged(version, params.gate.alpha)
        logger.info(decision.reason)
        return TrainOutcome(
            model=version,
            decision=decision,
            train_run_id=registered_tags.get("train_run_id", version.run_id or ""),
            evaluate_run_id=registered_tags.get("evaluate_run_id", ""),
            metrics=version.metrics,
        )
    runs_dir = settings.home / "runs"
    if not params.reuse:  # a folder of its own, even for two runs started in the same second
        runs_dir = runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    tags = {"dataset_id": dataset.id, "profile": params.profile}

    # What evaluation, int8 and rescoring look at: the detector, or the two-stage folder.
    two_stage: Path | None = None
    extra: dict[str, Path] = {}
    with ExitStack() as runs:
        train_run = runs.enter_context(
            mlflow_runs.run(client, experiment_id, "train", parent_run_id, tags)
        )
        mlflow_runs.log_params(
            client,
            train_run,
            {"profile": params.profile, "dataset_id": dataset.id, "dataset_uri": params.dataset.uri}
            | mlflow_runs.flatten("recipe", config.model_dump(mode="json", exclude={"classifier"})),
        )
        stage2, letters_future = config.classifier, None
        if stage2 is not None:
            cls_run = runs.enter_context(
                mlflow_runs.run(client, experiment_id, "train-classifier", parent_run_id, tags)
            )
            mlflow_runs.log_params(
                client, cls_run, mlflow_runs.flatten("classifier", stage2.model_dump(mode="json"))
            )
            # The classifier needs only the labels, so it trains beside the detector.
            letters_future = classifier_task.submit(
                dataset, stage2, runs_dir, config.device, cls_run, settings.tracking_uri,
                settings.weights_dir,
            )  # fmt: skip
        result = train_task(dataset, config, runs_dir, train_run, settings.weights_dir)
        logger.info("detector started from %s", result.started_from.describe())
        started_from = {"detector": result.started_from}
        mlflow_runs.log_training(client, train_run, result)
        # Ensemble members train one after another once the detector has freed its core.
        members: list[tuple[ClassifierConfig, str, PrefectFuture[TrainResult]]] = []
        for i, member in enumerate(config.extra_classifiers, start=1):
            member_run = runs.enter_context(
                mlflow_runs.run(client, experiment_id, f"train-classifier-{i}", parent_run_id, tags)
            )
            mlflow_runs.log_params(
                client,
                member_run,
                mlflow_runs.flatten("classifier", member.model_dump(mode="json")),
            )
            future = classifier_task.submit(
                dataset, member, runs_dir, config.device, member_run, settings.tracking_uri,
                settings.weights_dir, wait_for=[members[-1][2]] if members else None,
            )  # fmt: skip
            members.append((member, member_run, future))
        onnx = export_onnx(result.best, config.imgsz, result.run_dir / "export")
        model: Path = result.best
        if stage2 is not None and letters_future is not None:
            letters = letters_future.result()
            mlflow_runs.log_training(client, cls_run, letters)
            logger.info("letter classifier started from %s", letters.started_from.describe())
            started_from["classifier"] = letters.started_from
            cls_onnx = export_onnx(letters.best, stage2.imgsz, letters.run_dir / "export")
            member_onnx = []
            for member, member_run, future in members:
                trained = future.result()
                mlflow_runs.log_training(client, member_run, trained)
                member_onnx.append(
                    export_onnx(trained.best, member.imgsz, trained.run_dir / "export")
                )
            two_stage = model = assemble(
                onnx,
                cls_onnx,
                letters.best,
                result.run_dir / "two-stage",
                pad=stage2.pad,
                mirror=stage2.mirror,
                extra_classifiers=member_onnx,
            )
            extra = bundle_artifacts(two_stage)

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
            recipe=recipe,
        )  # fmt: skip
        version = with_retries(lambda: register(model_uri, tags), "registering the model")

        def rescore(champion: ModelVersion) -> dict[str, bool] | None:
            # The paired test needs the champion's results on the candidate's own images.
            try:
                return dict(
                    rescore_champion(
                        champion, dataset.data_yaml, eval_dir, resolve_device(config.device),
                        settings.tracking_uri,
                    )
                )  # fmt: skip
            except Exception as exc:  # an unreadable champion must not lose the candidate
                logger.warning("champion v%s could not be scored: %s", champion.version, exc)
                return None

        decision = decide_promotion(
            version, reports[GATE_SPLIT].image_correct, params.gate.alpha, rescore
        )
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
