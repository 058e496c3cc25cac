"""The recipe of a two-stage model's letter classifier (part of ``TrainConfig``)."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from tasks.inference.crop_classifier import DEFAULT_PAD
from tasks.training import architectures


class ClassifierConfig(BaseModel):
    """How to train the letter classifier of a two-stage model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="yolov5n-cls.yaml",
        description="Architecture: an ultralytics -cls yaml or a file of "
        "tasks/training/architectures/ "
        "(yolov5n-cls.yaml: the YOLOv5n backbone, so yolov5nu.pt's COCO weights load into it).",
    )
    weights: str | None = Field(
        default=None,
        description="Pretrained weights (as TrainConfig.weights): the backbone's tensors load by "
        "name and shape, the head starts fresh. None: from scratch.",
    )
    imgsz: int = Field(default=128, ge=32, le=640, description="Crop side in pixels.")
    epochs: int = Field(default=100, ge=1, description="Maximum epochs.")
    time_hours: float | None = Field(
        default=None, gt=0, description="Time budget in hours; overrides epochs when set."
    )
    batch: int = Field(default=32, ge=1, description="Batch size.")
    optimizer: str = Field(
        default="AdamW",
        description="Explicit on purpose: with a time budget 'auto' picks MuSGD, "
        "far slower per step on a CPU.",
    )
    lr0: float = Field(default=0.002, gt=0, description="Initial learning rate.")
    warmup_epochs: float | None = Field(
        default=None,
        ge=0,
        description="Warm-up epochs (None: ultralytics' 3). A fine-tune of trained weights "
        "wants 0: the warm-up starts the biases at a learning rate of 0.1.",
    )
    pad: float = Field(default=DEFAULT_PAD, ge=0, le=1, description="Margin around each hand.")
    jitter: float = Field(
        default=0.15, ge=0, lt=0.5, description="Random shift/scale of train boxes."
    )
    train_copies: int = Field(default=1, ge=1, description="Jittered crops per train box.")
    fraction: float = Field(default=1.0, gt=0, le=1, description="Fraction of train crops used.")
    mirror: bool = Field(
        default=False,
        description="At inference, average each crop's letter probabilities with its mirror "
        "image's (a second classifier run per hand).",
    )
    seed: int = Field(default=0, description="Random seed (crops and training).")
    workers: int = Field(default=2, ge=0, description="Dataloader worker processes.")

    def key(self, dataset_id: str, weights_sha256: str | None = None) -> str:
        """A stable id for (dataset, recipe, starting weights), as
        :meth:`tasks.training.detector.TrainConfig.key`."""
        # mirror changes only how the trained classifier is run, not what is trained.
        recipe = self.model_dump(mode="json", exclude={"workers", "mirror"})
        if recipe["warmup_epochs"] is None:  # keeps the keys of recipes from before the field
            del recipe["warmup_epochs"]
        if shipped := architectures.fingerprint(self.model):
            recipe["architecture"] = shipped
        if weights_sha256:
            recipe["weights_sha256"] = weights_sha256
        digest = hashlib.sha256(json.dumps([dataset_id, "cls", recipe], sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def crops_key(self, dataset_id: str) -> str:
        """The crop set depends only on the dataset and how crops are cut."""
        cut = [dataset_id, self.pad, self.jitter, self.train_copies, self.seed, self.crop_side]
        return hashlib.sha256(json.dumps(cut).encode()).hexdigest()[:16]

    @property
    def crop_side(self) -> int:
        """Stored crops are a little larger than the input, so random crops keep detail."""
        return round(self.imgsz * 1.25)
