"""Train an Ultralytics YOLO detector; an interrupted training resumes from ``last.pt``.

MLflow logging and the other run helpers both trainings share are in
:mod:`tasks.training.ultralytics_hooks`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.data.yolo_format import count_split_images
from tasks.training import architectures
from tasks.training.classifier_config import ClassifierConfig
from tasks.training.landmark_config import LandmarkConfig
from tasks.training.resume import Recording, TrainResult, claim, finish_run, resumed_model
from tasks.training.ultralytics_hooks import (
    MlflowLogger,
    clean_metrics,
    note,
    quiet_ultralytics,
    reporting,
    reused,
)
from tasks.training.weights import PRETRAINED_CACHE, resolve_weights, transfer

__all__ = [
    "BEST",
    "DONE_MARKER",
    "PLACEMENT",
    "TrainConfig",
    "TrainResult",
    "resolve_device",
    "train",
]

log = logging.getLogger(__name__)

DONE_MARKER = "fingerspell-train.json"
BEST_KEY = "metrics/mAP50-95(B)"  # the detector's fitness: what its best.pt is chosen by
# Its display name, and its name in a TrainResult (MLflow's, without parentheses).
BEST = ("mAP50-95", "metrics/mAP50-95B")
# Where a recipe runs, not what it trains: left out of the ids that name a trained model.
PLACEMENT: dict[str, Any] = {
    "device": True,
    "workers": True,
    "classifier": {"workers"},
    "extra_classifiers": {"__all__": {"workers"}},
}


class TrainConfig(BaseModel):
    """How to train the detector (the Prefect UI renders this as a form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="yolov5n.yaml",
        description="Architecture: an ultralytics model yaml (yolov5n.yaml) or a file of "
        "tasks/training/architectures/ (yolo11-hand-p45.yaml); a .pt here is loaded whole.",
    )
    weights: str | None = Field(
        default=None,
        description="Pretrained weights to start from: an ultralytics name (downloaded when "
        "online), a local path or an http(s) URL; FINGERSPELL_WEIGHTS_DIR is searched first. "
        "None (or unavailable): from scratch.",
    )
    imgsz: int = Field(default=640, ge=64, le=1280, description="Training image size (pixels).")
    epochs: int = Field(default=100, ge=1, description="Maximum epochs.")
    batch: int = Field(default=16, ge=1, description="Batch size.")
    time_hours: float | None = Field(
        default=None, gt=0, description="Time budget in hours; overrides epochs when set."
    )
    patience: int = Field(default=50, ge=0, description="Early-stop patience (epochs).")
    seed: int = Field(default=0, description="Random seed.")
    device: str = Field(default="auto", description="auto (GPU if present), cpu, 0, 0,1 …")
    workers: int = Field(default=2, ge=0, description="Dataloader worker processes.")
    fraction: float = Field(
        default=1.0, gt=0, le=1, description="Fraction of the train split to use."
    )
    cache: Literal["none", "ram", "disk"] = Field(
        default="none", description="Cache decoded images: none, ram or disk."
    )
    optimizer: str = Field(default="auto", description="Ultralytics optimizer name or auto.")
    overrides: dict[str, float | int | str | bool] = Field(
        default_factory=dict,
        description="Further ultralytics train arguments (lr0, mosaic, close_mosaic, …).",
    )
    classifier: ClassifierConfig | None = Field(
        default=None,
        description="Two-stage recipe: the detector learns one class (hand) and this "
        "classifier reads the letter from each hand's crop.",
    )
    extra_classifiers: tuple[ClassifierConfig, ...] = Field(
        default=(),
        description="More letter classifiers, trained once the detector is done (on the core "
        "it frees); the recognizer averages their letter probabilities with the first one's.",
    )
    landmarks: LandmarkConfig | None = Field(
        default=None,
        description="Two-stage recipe: also read each hand's 21 landmarks (MediaPipe) and fuse "
        "a landmark letter classifier with the crop classifier; a box with no hand in it "
        "is not read.",
    )
    augment_copies: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="Albumentations copies per train image this recipe was measured with; "
        "the pipeline builds that many unless data.augment.copies is given. None: the data "
        "flow's default.",
    )

    @model_validator(mode="after")
    def _one_crop_for_every_member(self) -> TrainConfig:
        if self.extra_classifiers and self.classifier is None:
            raise ValueError("extra_classifiers need a classifier (a two-stage recipe)")
        if self.landmarks and self.classifier is None:
            raise ValueError("landmarks need a classifier (a two-stage recipe)")
        for extra in self.extra_classifiers:
            # One crop per hand feeds every member, so they must be cut alike.
            if self.classifier and (extra.pad, extra.mirror) != (
                self.classifier.pad,
                self.classifier.mirror,
            ):
                raise ValueError("every classifier of an ensemble needs the same pad and mirror")
        return self

    def key(self, dataset_id: str, weights_sha256: str | None = None) -> str:
        """A stable id for (dataset, recipe, starting weights): a retried training finds its
        own checkpoint."""
        # The classifier and the landmark stage train separately (their own keys); the
        # detector's run is unaffected. The data side (augment_copies) is already in the
        # dataset id.
        recipe = self.model_dump(
            mode="json",
            exclude={
                "workers", "device", "classifier", "extra_classifiers", "landmarks",
                "augment_copies",
            },
        )  # fmt: skip
        if self.classifier is not None:
            recipe["single_cls"] = True
        if shipped := architectures.fingerprint(self.model):
            recipe["architecture"] = shipped
        if weights_sha256:
            recipe["weights_sha256"] = weights_sha256
        digest = hashlib.sha256(json.dumps([dataset_id, recipe], sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def ultralytics_args(self) -> dict[str, Any]:
        """The keyword arguments for ``YOLO.train`` that this config sets."""
        args: dict[str, Any] = {
            "imgsz": self.imgsz,
            "epochs": self.epochs,
            "batch": self.batch,
            "patience": self.patience,
            "seed": self.seed,
            "deterministic": True,
            "device": resolve_device(self.device),
            "workers": self.workers,
            "fraction": self.fraction,
            "cache": False if self.cache == "none" else self.cache,
            "optimizer": self.optimizer,
            **self.overrides,
        }
        if self.classifier is not None:
            args["single_cls"] = True  # stage one only finds hands
        if self.time_hours is not None:
            args["time"] = self.time_hours
        return args


def resolve_device(device: str) -> str:
    """Turn ``auto`` into the first GPU when one is present, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def train(
    data_yaml: Path,
    dataset_id: str,
    config: TrainConfig,
    runs_dir: Path,
    mlflow_run_id: str | None = None,
    weights_dir: Path | None = None,
    progress: Path | None = None,
) -> TrainResult:
    """Train (or resume, or reuse) a detector for one dataset and recipe.

    The run folder is ``runs_dir/<config.key(dataset_id)>``: a retried training finds its
    ``last.pt`` there and resumes from it, and a finished one is returned as it is.

    Args:
        data_yaml: The dataset's ``data.yaml`` (absolute paths).
        dataset_id: Content id of the dataset, part of the run folder's key.
        config: The training recipe.
        runs_dir: Where run folders live.
        mlflow_run_id: If given, params and per-epoch metrics are logged to this run.
        weights_dir: Searched first for ``config.weights`` (see :mod:`tasks.training.weights`).
        progress: A record file to keep this training's progress in (a display shows it);
            ultralytics' own console output is quiet then. None: ultralytics prints.

    Returns:
        Paths of the weights and a summary of the training.
    """
    quiet_ultralytics()
    note(progress, "preparing")
    from ultralytics import YOLO

    start = resolve_weights(config.weights, weights_dir, runs_dir / PRETRAINED_CACHE)
    run_dir = runs_dir / config.key(dataset_id, start.sha256)
    recording = Recording(
        n_train=lambda: count_split_images(data_yaml, "train"),
        fraction=config.fraction,
        row_metrics=lambda row: clean_metrics(
            {k: v for k, v in row.items() if k.startswith("metrics/")}
        ),
        best_metric=BEST_KEY,
    )
    with claim(run_dir, DONE_MARKER, start, recording) as state:
        if state.finished is not None:
            return reused(progress, state.finished, *BEST)
        if state.resume:
            model, transferred = resumed_model(run_dir, state), None
            # The checkpoint carries the recipe; only where the loaders run may change.
            kwargs: dict[str, Any] = {"resume": True, "data": str(data_yaml)}
            kwargs.update({k: v for k, v in config.ultralytics_args().items() if k == "workers"})
        else:
            model = YOLO(architectures.resolve(config.model))
            transferred = transfer(model, start)
            kwargs = {
                "plots": True,  # a default the recipe may turn off (a learner's own run)
                **config.ultralytics_args(),
                "data": str(data_yaml),
                "project": str(runs_dir),
                "name": run_dir.name,
                "exist_ok": True,
                "verbose": False,
            }
        if mlflow_run_id:
            MlflowLogger(mlflow_run_id).attach(model)
        with reporting(model, progress, BEST_KEY, BEST[0]):
            model.train(**kwargs)
        metrics = clean_metrics(getattr(model.trainer, "metrics", None) or {})
        n_train = count_split_images(data_yaml, "train")
        return finish_run(
            run_dir, n_train, config.fraction, state.resume, metrics, start, transferred,
            DONE_MARKER,
        )  # fmt: skip
