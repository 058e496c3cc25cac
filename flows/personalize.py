"""Personalize flow: fine-tune the champion on base data plus a learner's captures.

champion → base dataset (data flow) + captures, merged → fine-tune both stages from the
champion's own weights → evaluate before (champion) and after on base valid and on the
learner's held-out bursts → register under ``personal-<learner>``. It never moves
``champion`` or ``challenger``: a personal model is better for one person, not in general.

A learner's frames stay on this machine: the run logs to MLflow through
:class:`NoImagesClient`, which logs no image file (ultralytics' mosaics of training images
are the learner's webcam frames), and every copy it makes (merged dataset, crops, run
folders) sits under the learner's name, where ``delete_learner`` finds it.

``python -m flows.personalize --learner ann --minutes 4``
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows import mlflow_runs
from flows.data import DataParams, data_flow
from flows.train_stages import evaluate_task, train_stages
from tasks.core.records import IMAGE_SUFFIXES, ModelVersion
from tasks.core.settings import get_settings, prepare_environment
from tasks.data.augment_config import AugmentConfig
from tasks.data.captures import check_learner, learner_dir, personal_runs_dir, read_bursts
from tasks.data.merge import captures_ref, merge_with_captures
from tasks.registry.models import (
    CHAMPION,
    MODEL_NAME,
    download_version,
    find_registered,
    get_version,
    log_model,
    model_metadata,
    personal_alias,
    recipe_id,
    register,
    version_tags,
)
from tasks.registry.tracking import with_retries
from tasks.training.detector import PLACEMENT
from tasks.training.fusion_choice import part_scores
from tasks.training.profiles import personal

SPLITS = {"base": "valid", "learner": "valid"}  # scored before and after, on these
# What a picture file starts with, whatever its name: JPEG, PNG, GIF, BMP, WebP (RIFF), TIFF.
_PICTURE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")

log = logging.getLogger(__name__)


def is_picture(path: Path) -> bool:
    """Whether ``path`` is an image file, by its suffix or by its first bytes."""
    if path.suffix.lower() in IMAGE_SUFFIXES | {".gif", ".svg"}:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(8).startswith(_PICTURE_MAGIC)
    except OSError:
        return False


class NoImagesClient(mlflow_runs.RedactingClient):
    """The MLflow client of a personal run: it logs no image, whoever asks it to.

    The run-folder logging takes every ``.jpg`` and ``.png`` of a training folder, where
    ultralytics draws its training batches (``train_batch*.jpg``): for a learner, their webcam
    frames. A refused file is skipped with a log line, so the run itself goes on.
    """

    def log_artifact(self, run_id: str, local_path: Any, artifact_path: Any = None) -> None:
        """``MlflowClient.log_artifact``, skipping an image file."""
        if is_picture(Path(local_path)):
            log.info("not logged to MLflow: %s (a personal run logs no image)", local_path)
            return
        super().log_artifact(run_id, local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: Any, artifact_path: Any = None) -> None:
        """``MlflowClient.log_artifacts`` file by file, skipping image files."""
        folder = Path(local_dir)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            where = path.parent.relative_to(folder).as_posix()
            parts = [part for part in (artifact_path, where) if part and part != "."]
            self.log_artifact(run_id, str(path), "/".join(parts) or None)

    def log_image(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """Refused: a personal run logs no image."""
        log.info("not logged to MLflow: an image (a personal run logs none)")

    def log_figure(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """Refused: a personal run logs no image."""
        log.info("not logged to MLflow: a figure (a personal run logs none)")


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
    logger = get_run_logger()
    settings = get_settings()
    prepare_environment(settings)
    _, experiment_id = mlflow_runs.connect(settings)  # credentials and the experiment
    uri = settings.tracking_uri
    client = NoImagesClient(tracking_uri=uri, registry_uri=uri)
    captures = learner_dir(settings.home, params.learner)
    splits = {burst.split for burst in read_bursts(captures)}
    if splits != {"train", "valid"}:
        raise ValueError(
            f"{captures}: teach at least two bursts of a letter first (one trains, one is held "
            f"out to score the result); found bursts in {sorted(splits) or 'no split'}"
        )
    champion = get_version(CHAMPION)
    if champion is None:
        raise ValueError("no champion to personalize; train one first (make demo)")
    files = download_version(champion.version, settings.tracking_uri)
    config = personal(files.meta, files.artifacts, params.minutes)
    copies = config.augment_copies
    base = data_flow(
        DataParams(source=params.source)
        if copies is None
        else DataParams(source=params.source, augment=AugmentConfig(copies=copies))
    )
    merged = merge_with_captures(base, captures, settings.datasets_dir)
    learner_data = captures_ref(captures)
    alias = alias_for(params.learner)
    recipe = recipe_id(
        merged.id,
        config.model_dump(mode="json", exclude=PLACEMENT)
        | {"champion": champion.version, "learner": params.learner},
    )
    if params.reuse and (same := find_registered(merged.id, recipe)) is not None:
        # Pressing Personalize again with no new bursts would only register a copy.
        return _reuse(client, same[0], alias, champion.version, logger)
    tags = {"dataset_id": merged.id, "profile": "personal", "learner": params.learner}
    runs = personal_runs_dir(settings.home, params.learner)  # crops, trainings: resumable
    out = runs / "eval"  # this run's evaluations
    shutil.rmtree(out, ignore_errors=True)

    with mlflow_runs.run(client, experiment_id, f"personalize-{params.learner}", None, tags) as top:
        # Before: the champion on the images the personal model will be scored on.
        before = {
            name: evaluate_task(
                files.model, data, SPLITS[name], out / f"before-{name}",
                int(files.meta["imgsz"]), config.device,
            ).metrics_dict()[f"{SPLITS[name]}_top1"]
            for name, data in (("base", merged), ("learner", learner_data))
        }  # fmt: skip
        trained = train_stages(
            client, experiment_id, merged, config, runs / "train", top, tags,
            {"profile": "personal", "dataset_id": merged.id, "champion": champion.version},
        )  # fmt: skip
        reports = {
            name: evaluate_task(
                trained.model, data, SPLITS[name], out / f"after-{name}", config.imgsz,
                config.device,
            )
            for name, data in (("base", merged), ("learner", learner_data))
        }  # fmt: skip
        after = {
            name: report.metrics_dict()[f"{SPLITS[name]}_top1"] for name, report in reports.items()
        }
        metrics = {
            f"{name}_top1_{when}": value
            for when, scores in (("before", before), ("after", after))
            for name, value in scores.items()
        }
        # Each part of a fused model on the learner's held-out frames (pixels, landmarks).
        for when, folder in (("before", files.model), ("after", trained.model)):
            for part, value in part_scores(folder, learner_data.data_yaml, "valid").items():
                metrics[f"learner_{part}_top1_{when}"] = value
        for key, value in metrics.items():
            client.log_metric(top, key, value)
        metrics |= reports["base"].metrics_dict()
        meta = model_metadata(
            merged.names, config.imgsz, merged.id, metrics,
            eval_dataset_id=merged.parent_id, profile="personal",
            started_from={stage: w.record() for stage, w in trained.started_from.items()},
            bundle=trained.two_stage,
        ) | {"learner": params.learner}  # fmt: skip
        model_uri = with_retries(
            lambda: log_model(
                trained.train_run, trained.result.best, trained.onnx, meta, extra=trained.extra
            ),
            "logging the model",
        )
        version_tag_values = version_tags(
            merged.id, "personal", trained.train_run, top, metrics,
            eval_dataset_id=merged.parent_id,
            started_from={"champion": f"v{champion.version}"}, recipe=recipe,
        ) | {"learner": params.learner}  # fmt: skip
        version = with_retries(
            lambda: register(model_uri, version_tag_values), "registering the model"
        )
        with_retries(
            lambda: client.set_registered_model_alias(MODEL_NAME, alias, version.version),
            f"setting alias {alias}",
        )
    logger.info(
        "registered %s v%s as %s: learner top-1 %.3f -> %.3f, base valid top-1 %.3f -> %.3f",
        version.name, version.version, alias, before["learner"], after["learner"],
        before["base"], after["base"],
    )  # fmt: skip
    return PersonalizeOutcome(
        model=version.model_copy(update={"metrics": metrics}),
        alias=alias,
        champion_version=champion.version,
        before=before,
        after=after,
    )


def _reuse(
    client: Any, version: ModelVersion, alias: str, champion: str, logger: Any
) -> PersonalizeOutcome:
    """The outcome of a run that found its model registered: the alias points at it."""
    if alias not in version.aliases:
        with_retries(
            lambda: client.set_registered_model_alias(MODEL_NAME, alias, version.version),
            f"setting alias {alias}",
        )
    scores = {
        when: {name: version.metrics.get(f"{name}_top1_{when}", 0.0) for name in SPLITS}
        for when in ("before", "after")
    }
    logger.info(
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
