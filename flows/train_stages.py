"""The training stages both the train and the personalize flow run: detector, letter
classifier (beside it, in its own process), ensemble members, ONNX exports, the two-stage
bundle; each stage under its own MLflow run.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from flows.progress import step_progress, training_display
from tasks.core.records import DatasetRef
from tasks.core.settings import get_settings
from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.report import EvalReport
from tasks.inference.bundle import assemble, bundle_artifacts
from tasks.inference.export import export_onnx
from tasks.registry import mlflow_runs
from tasks.training import classifier as letters_stage
from tasks.training import detector as hands_stage
from tasks.training.classifier import ClassifierConfig, train_classifier
from tasks.training.detector import TrainConfig, TrainResult, resolve_device, train
from tasks.training.landmark_stage import LandmarkStage, summary, train_landmark_stage
from tasks.training.progress import StageSummary, record_path, stage_names, stage_summary
from tasks.training.ultralytics_hooks import note
from tasks.training.weights import StartingWeights


@task(cache_policy=NO_CACHE, retries=1)
def train_task(
    dataset: DatasetRef,
    config: TrainConfig,
    runs_dir: Path,
    run_id: str,
    weights_dir: Path | None = None,
    progress: Path | None = None,
) -> TrainResult:
    """Train, resuming an interrupted run of the same dataset and recipe."""
    return train(
        dataset.data_yaml, dataset.id, config, runs_dir, mlflow_run_id=run_id,
        weights_dir=weights_dir, progress=progress,
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
    progress: Path | None = None,
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
            progress,  # a path: the process writes its record there, the display reads it
        )
        return job.result()


@task(cache_policy=NO_CACHE)
def evaluate_task(
    weights: Path, dataset: DatasetRef, split: str, out_dir: Path, imgsz: int, device: str
) -> EvalReport:
    """Evaluate on one split and publish the report as Prefect artifacts."""
    with step_progress(f"progress-evaluation-{split}", f"evaluating {split} ({dataset.id})"):
        report = evaluate(
            weights, dataset.data_yaml, split, out_dir, imgsz=imgsz, device=resolve_device(device)
        )
    create_markdown_artifact(key=f"evaluation-{split}", markdown=report.to_markdown())
    create_table_artifact(key=f"per-letter-{split}", table=report.per_letter_rows())
    return report


LANDMARKS_BEST = ("fused top1", "box_valid_top1_fused")  # display name, key in its metrics


def landmark_stage(
    client: MlflowClient,
    experiment_id: str,
    dataset: DatasetRef,
    config: TrainConfig,
    pixels: Path,
    runs_dir: Path,
    parent_run_id: str | None,
    tags: dict[str, str],
    progress: Path | None = None,
) -> tuple[LandmarkStage | None, StageSummary]:
    """The landmark classifier and the fusion rule, under a ``train-landmarks`` run.

    Returns:
        The stage (None where no landmark model can be had) and its line of the summary.
    """
    assert config.landmarks is not None and config.classifier is not None
    stage2, settings = config.classifier, get_settings()
    epochs, started = config.landmarks.epochs, time.time()
    note(progress, "training", epochs=epochs)
    with mlflow_runs.run(client, experiment_id, "train-landmarks", parent_run_id, tags) as run:
        mlflow_runs.log_params(
            client, run, mlflow_runs.flatten("landmarks", config.landmarks.model_dump(mode="json"))
        )
        stage = train_landmark_stage(
            dataset.data_yaml, dataset.id, dataset.names, pixels, stage2.pad, stage2.mirror,
            # The runs folder caches (a learner's lies under their name: delete removes it).
            config.landmarks, runs_dir / "landmark-classifier", runs_dir, settings.weights_dir,
        )  # fmt: skip
        if stage is None:
            mlflow_runs.set_tag(client, run, "landmarks", "unavailable: pixels alone")
        else:
            _log_landmarks(client, run, stage)
    name, key = LANDMARKS_BEST
    done = StageSummary(
        stage="landmarks", epochs=epochs if stage else 0, minutes=(time.time() - started) / 60,
        metric=name, best=stage.metrics.get(key) if stage else None,
    )  # fmt: skip
    note(
        progress, "done" if stage else "failed", epoch=done.epochs, epochs=epochs,
        elapsed_s=done.minutes * 60, metric=name, best=done.best,
    )  # fmt: skip
    return stage, done


def _log_landmarks(client: MlflowClient, run: str, stage: LandmarkStage) -> None:
    """The landmark stage's figures, rule and candidates: to MLflow and as artifacts."""
    for key, value in stage.metrics.items():
        client.log_metric(run, key, value)
    mlflow_runs.log_json(client, run, "fusion.json", {
        "rule": stage.rule.model_dump(mode="json"), "candidates": stage.rows,
    })  # fmt: skip
    mlflow_runs.set_tag(client, run, "landmarks.started_from", stage.started_from.describe())
    create_table_artifact(key="fusion-choice", table=stage.rows)
    create_markdown_artifact(key="landmarks", markdown=summary(stage))


@dataclass
class Trained:
    """What the training stages produced."""

    result: TrainResult  # the detector's training
    onnx: Path  # the detector's export
    model: Path  # what evaluation reads: the detector's weights or the two-stage folder
    train_run: str
    two_stage: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)  # more files a two-stage model ships
    started_from: dict[str, StartingWeights] = field(default_factory=dict)
    stages: list[StageSummary] = field(default_factory=list)  # for the flow's summary


def train_stages(
    client: MlflowClient,
    experiment_id: str,
    dataset: DatasetRef,
    config: TrainConfig,
    runs_dir: Path,
    parent_run_id: str | None,
    tags: dict[str, str],
    params: dict[str, Any],
) -> Trained:
    """Train every stage of ``config`` on ``dataset`` and export it.

    Each stage keeps a progress record in a folder of this call's own, and one display shows
    them all while the stages run (:func:`flows.progress.training_display`).

    Args:
        client: The MLflow client of the flow.
        experiment_id: Its experiment.
        dataset: A local dataset.
        config: The recipe.
        runs_dir: Where run folders live.
        parent_run_id: The MLflow run the stage runs nest under.
        tags: Tags of every stage run.
        params: Params of the detector's run besides the recipe.

    Returns:
        The trained model's files and runs.
    """
    logger = get_run_logger()
    settings = get_settings()
    # What evaluation, int8 and rescoring look at: the detector, or the two-stage folder.
    two_stage: Path | None = None
    extra: dict[str, Path] = {}
    with ExitStack() as runs:
        # Each stage's progress record, in a folder of this call's own; one display shows them.
        progress = runs_dir / "progress" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}"
        runs.callback(shutil.rmtree, progress, ignore_errors=True)
        runs.enter_context(training_display(progress, stage_names(config)))
        train_run = runs.enter_context(
            mlflow_runs.run(client, experiment_id, "train", parent_run_id, tags)
        )
        mlflow_runs.log_params(
            client,
            train_run,
            dict(params)
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
                settings.weights_dir, record_path(progress, "classifier"),
            )  # fmt: skip
        result = train_task(
            dataset, config, runs_dir, train_run, settings.weights_dir,
            record_path(progress, "detector"),
        )  # fmt: skip
        logger.info("detector started from %s", result.started_from.describe())
        started_from = {"detector": result.started_from}
        stages = [stage_summary("detector", result, hands_stage.BEST)]
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
                settings.weights_dir, record_path(progress, f"classifier-{i}"),
                wait_for=[members[-1][2]] if members else None,
            )  # fmt: skip
            members.append((member, member_run, future))
        onnx = export_onnx(result.best, config.imgsz, result.run_dir / "export")
        model: Path = result.best
        if stage2 is not None and letters_future is not None:
            letters = letters_future.result()
            mlflow_runs.log_training(client, cls_run, letters)
            logger.info("letter classifier started from %s", letters.started_from.describe())
            started_from["classifier"] = letters.started_from
            stages.append(stage_summary("classifier", letters, letters_stage.BEST))
            cls_onnx = export_onnx(letters.best, stage2.imgsz, letters.run_dir / "export")
            member_onnx = []
            for i, (member, member_run, future) in enumerate(members, start=1):
                trained = future.result()
                mlflow_runs.log_training(client, member_run, trained)
                stages.append(stage_summary(f"classifier-{i}", trained, letters_stage.BEST))
                member_onnx.append(
                    export_onnx(trained.best, member.imgsz, trained.run_dir / "export")
                )
            fused = None
            if config.landmarks is not None:
                fused, landmarks = landmark_stage(
                    client, experiment_id, dataset, config, cls_onnx, runs_dir, parent_run_id,
                    tags, record_path(progress, "landmarks"),
                )  # fmt: skip
                stages.append(landmarks)
                if fused is not None:
                    started_from["landmarks"] = fused.started_from
            two_stage = model = assemble(
                onnx,
                cls_onnx,
                letters.best,
                result.run_dir / "two-stage",
                pad=stage2.pad,
                mirror=stage2.mirror,
                extra_classifiers=member_onnx,
                landmarks=(fused.classifier, fused.task, fused.rule) if fused else None,
                fusion_figures=fused.metrics if fused else None,
            )
            extra = bundle_artifacts(two_stage)
    return Trained(
        result=result,
        onnx=onnx,
        model=model,
        train_run=train_run,
        two_stage=two_stage,
        extra=extra,
        started_from=started_from,
        stages=stages,
    )
