"""The recipe of a two-stage model's landmark letter classifier (part of ``TrainConfig``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tasks.inference.landmarks import CROP_PAD, PRESENCE, TASK_URL


class LandmarkConfig(BaseModel):
    """How to train the landmark classifier and fuse it with the crop classifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = Field(
        default=TASK_URL,
        description="MediaPipe's hand_landmarker.task: found first in FINGERSPELL_WEIGHTS_DIR "
        "(by its file name), else downloaded from this URL.",
    )
    hidden: int = Field(default=256, ge=8, le=2048, description="Width of the two hidden layers.")
    dropout: float = Field(default=0.2, ge=0, lt=1, description="Dropout after each hidden layer.")
    epochs: int = Field(default=250, ge=1, description="Passes over the train landmarks.")
    lr: float = Field(default=0.003, gt=0, description="AdamW learning rate (cosine decay).")
    weight_decay: float = Field(default=0.0005, ge=0, description="AdamW weight decay.")
    rotate_deg: float = Field(
        default=15.0, ge=0, le=90, description="Augmentation: in-plane rotation, degrees."
    )
    stretch: float = Field(
        default=0.1, ge=0, lt=1, description="Augmentation: x/y stretch (another camera angle)."
    )
    jitter: float = Field(
        default=0.02, ge=0, lt=1, description="Augmentation: point noise, share of hand size."
    )
    mirror: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Augmentation: share of hands mirrored (handedness read wrong).",
    )
    crop_pad: float = Field(default=CROP_PAD, ge=0, description="Margin of the landmark crop.")
    presence: float = Field(
        default=PRESENCE, ge=0, le=1, description="Least hand presence read as a hand."
    )
    landmark_weight: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of the landmark side in the fused reading; None: chosen by the "
        "training flow on valid and on a shifted copy of valid (best worst case).",
    )
    seed: int = Field(default=0, description="Seed of initialisation and augmentation.")
