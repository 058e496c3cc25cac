"""Personalize flow: fine-tune the champion on base data plus a learner's captures.

champion → base dataset (data flow) + captures, merged → fine-tune both stages from the
champion's own weights → evaluate before (champion) and after on base valid and on the
learner's held-out bursts → register under ``personal-<learner>``. It never moves
``champion`` or ``challenger``: a personal model is better for one person, not in general.

A learner's frames stay on this machine: the run logs to MLflow through a client that logs
no image file (:class:`tasks.registry.clients.NoImagesClient`; ultralytics' mosaics of
training images are the learner's webcam frames), and every copy it makes (merged dataset,
crops, run folders) sits under the learner's name, where ``delete_learner`` finds it.

``python -m flows.personalize --learner ann --minutes 4``
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.data import DataParams, data_flow
from flows.progress import publish_summary
from flows.train_stages import Trained, evaluate_task, train_stages
from tasks.core.records import DatasetRef, ModelVersion
from tasks.data.augment_config import AugmentConfig
from tasks.data.captures import check_learner, learner_dir, personal_runs_dir, read_bursts
from tasks.data.merge import captures_ref, merge_with_captures
from tasks.evaluation.report import EvalReport
from tasks.registry import mlflow_runs
from tasks.registry.models import (
    CHAMPION,
    PERSONAL_PREFIX,
    download_version,
    find_registered,
    get_version,
    personal_alias,
    recipe_id,
)
from tasks.registry.publish import model_metadata, publish_version, set_alias, version_tags
from tasks.registry.tracking import Job, open_job
from tasks.training.detector import PLACEMENT, TrainConfig
from tasks.training.fusion_choice import part_scores
from tasks.training.profiles import personal

SPLITS = {"base": "valid", "learner": "valid"}  # scored before and after, on these


class PersonalizeParams(BaseModel):
    """Whose captures, and how long the fine-tune may take."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    learner: str = Field(description="Learner name: lower-case letters, digits, dashes.")
    minutes: float | None = Field(
        default=4.0,
        gt=0,
        le=60,
        description="Minutes per stage (detector and classifier train side by side); None "
        "keeps the champion profile's epochs.",
    )
    source: str | None = Field(
        default=None, description="Base dataset source; default FINGERSPELL_DATASET."
    )
    reuse: bool = Field(
        default=True,
        description="When the captures, base data, champion and recipe are those of a model "
        "already registered for this learner, give it the alias instead of training a copy.",
    )

    @field_validator("learner")
    @classmethod
    def _learner(cls, value: str) -> str:
        return check_learner(value)


class PersonalizeOutcome(BaseModel):
    """The learner's model and what teaching bought, on the same images before and after."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelVersion
    alias: str
    champion_version: str
    before: dict[str, float] = Field(description="top-1 of the champion: base, learner.")
    after: dict[str, float] = Field(description="top-1 of the personal model: base, learner.")
    reused: bool = Field(
        default=False, description="Nothing changed since this model was trained; none trained."
    )


def alias_for(learner: str) -> str:
    """The registry alias of a learner's model."""
    return personal_alias(check_learner(learner))


@flow(name="personalize", log_prints=True)
def personalize_flow(params: PersonalizeParams) -> PersonalizeOutcome:
    """Fine-tune the champion for one learner and register it under ``personal-<learner>``.

    Raises:
        ValueError: No champion, or captures without a burst in train and one in valid.
    """
    job = open_job(images=False)  # a learner's frames never reach MLflow
    captures = learner_dir(job.settings.home, params.learner)
    _check_splits(captures)
    champion = get_version(CHAMPION)
    if champion is None:
        raise ValueError("no champion to personalize; train one first (make demo)")
    files = download_version(champion.version, job.settings.tracking_uri)
    config = personal(files.meta, files.artifacts, params.minutes)
    merged = merge_with_captures(
        _base_data(params.source, config), captures, job.settings.datasets_dir
    )
    learner_data = captures_ref(captures)
    alias = alias_for(params.learner)
    recipe = recipe_id(
        merged.id,
        config.model_dump(mode="json", exclude=PLACEMENT)
        | {"champion": champion.version, "learner": params.learner},
    )
    if params.reuse and (same := find_registered(merged.id, recipe)) is not None:
        # Pressing Personalize again with no new bursts would only register a copy.
        return _reuse(job, same[0], alias, champion.version)
    tags = {"dataset_id": merged.id, "profile": "personal", "learner": params.learner}
    folder = personal_runs_dir(job.settings.home, params.learner)  # crops, trainings: resumable
    out = folder / "eval"  # this run's evaluations
    shutil.rmtree(out, ignore_errors=True)
    data = {"base": merged, "learner": learner_data}
    with mlflow_runs.run(
        job.client, job.experiment_id, f"personalize-{params.learner}", None, tags
    ) as top:
        # Before: the champion on the images the personal model will be scored on.
        before = _scores(files.model, data, out / "before", int(files.meta["imgsz"]), config)
        trained = train_stages(
            job.client, job.experiment_id, merged, config, folder / "train", top, tags,
            {"profile": "personal", "dataset_id": merged.id, "champion": champion.version},
        )  # fmt: skip
        after = _scores(trained.model, data, out / "after", config.imgsz, config)
        metrics = _metrics(before, after, files.model, trained.model, learner_data)
        for key, value in metrics.items():
            job.client.log_metric(top, key, value)
        metrics |= after["base"].metrics_dict()
        version = _publish(job, trained, merged, config, champion, recipe, metrics, top, alias)
    get_run_logger().info(
        "registered %s v%s as %s: learner top-1 %.3f -> %.3f, base valid top-1 %.3f -> %.3f",
        version.name, version.version, alias, metrics["learner_top1_before"],
        metrics["learner_top1_after"], metrics["base_top1_before"], metrics["base_top1_after"],
    )  # fmt: skip
    publish_summary("personalize-summary", trained.stages, metrics, version, alias=alias)
    return PersonalizeOutcome(
        model=version.model_copy(update={"metrics": metrics}),
        alias=alias,
        champion_version=champion.version,
        before={name: metrics[f"{name}_top1_before"] for name in SPLITS},
        after={name: metrics[f"{name}_top1_after"] for name in SPLITS},
    )


def _base_data(source: str | None, config: TrainConfig) -> DatasetRef:
    """The base dataset, augmented as the champion's recipe was (the data flow)."""
    copies = config.augment_copies
    if copies is None:
        return data_flow(DataParams(source=source))
    return data_flow(DataParams(source=source, augment=AugmentConfig(copies=copies)))


def _check_splits(captures: Path) -> None:
    """Raise unless the captures hold a burst in train and one in valid."""
    splits = {burst.split for burst in read_bursts(captures)}
    if splits != {"train", "valid"}:
        raise ValueError(
            f"{captures}: teach at least two bursts of a letter first (one trains, one is held "
            f"out to score the result); found bursts in {sorted(splits) or 'no split'}"
        )


def _scores(
    model: Path, data: dict[str, DatasetRef], out: Path, imgsz: int, config: TrainConfig
) -> dict[str, EvalReport]:
    """``model`` evaluated on each of ``data``'s scored split (base valid, learner valid)."""
    return {
        name: evaluate_task(model, ref, SPLITS[name], out / name, imgsz, config.device)
        for name, ref in data.items()
    }


def _metrics(
    before: dict[str, EvalReport],
    after: dict[str, EvalReport],
    champion: Path,
    personal_model: Path,
    learner: DatasetRef,
) -> dict[str, float]:
    """Top-1 before and after on base and learner, and each part of a fused model."""
    metrics = {
        f"{name}_top1_{when}": report.metrics_dict()[f"{SPLITS[name]}_top1"]
        for when, reports in (("before", before), ("after", after))
        for name, report in reports.items()
    }
    # Each part of a fused model on the learner's held-out frames (pixels, landmarks).
    for when, folder in (("before", champion), ("after", personal_model)):
        for part, value in part_scores(folder, learner.data_yaml, "valid").items():
            metrics[f"learner_{part}_top1_{when}"] = value
    return metrics


def _publish(
    job: Job,
    trained: Trained,
    merged: DatasetRef,
    config: TrainConfig,
    champion: ModelVersion,
    recipe: str,
    metrics: dict[str, float],
    run_id: str,
    alias: str,
) -> ModelVersion:
    """Log, register and tag the personal model, and point the learner's alias at it."""
    learner = alias.removeprefix(PERSONAL_PREFIX)
    meta = model_metadata(
        merged.names, config.imgsz, merged.id, metrics,
        eval_dataset_id=merged.parent_id, profile="personal",
        started_from={stage: w.record() for stage, w in trained.started_from.items()},
        bundle=trained.two_stage,
    ) | {"learner": learner}  # fmt: skip
    tags = version_tags(
        merged.id, "personal", trained.train_run, run_id, metrics,
        eval_dataset_id=merged.parent_id,
        started_from={"champion": f"v{champion.version}"}, recipe=recipe,
    ) | {"learner": learner}  # fmt: skip
    return publish_version(
        job.client, trained.train_run, trained.result.best, trained.onnx, meta, tags,
        extra=trained.extra, alias=alias,
    )  # fmt: skip


def _reuse(job: Job, version: ModelVersion, alias: str, champion: str) -> PersonalizeOutcome:
    """The outcome of a run that found its model registered: the alias points at it."""
    if alias not in version.aliases:
        set_alias(job.client, alias, version.version)
    scores = {
        when: {name: version.metrics.get(f"{name}_top1_{when}", 0.0) for name in SPLITS}
        for when in ("before", "after")
    }
    get_run_logger().info(
        "nothing changed: v%s was trained on these captures, base data and champion with this "
        "recipe; %s points at it and nothing was trained (teach more bursts, or reuse=false)",
        version.version, alias,
    )  # fmt: skip
    return PersonalizeOutcome(
        model=version,
        alias=alias,
        champion_version=champion,
        before=scores["before"],
        after=scores["after"],
        reused=True,
    )


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(personalize_flow, PersonalizeParams, "python -m flows.personalize")
