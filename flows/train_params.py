"""The training flow's parameters (forms in the Prefect UI) and what it returns."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.core.records import DatasetRef, ModelVersion
from tasks.registry.int8_choice import INT8_TOLERANCE
from tasks.registry.promotion import PromotionDecision
from tasks.training.detector import TrainConfig
from tasks.training.profiles import PROFILES, get_profile, with_changes


class GateConfig(BaseModel):
    """How a candidate is compared with the champion: top-1 on valid, paired on the same images."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Significance level of the exact McNemar test on valid: champion moves "
        "only when the candidate reads more of the same images right beyond chance.",
    )


class RecipeParams(BaseModel):
    """Which recipe trains (a profile, or a whole recipe, with some fields changed), how its
    result is judged, and whether an earlier training of it is reused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str = Field(
        default="cpu", description=f"Training recipe, one of {', '.join(PROFILES)}."
    )
    train: TrainConfig | None = Field(
        default=None, description="A full training recipe; overrides the profile when given."
    )
    train_changes: dict[str, Any] = Field(
        default_factory=dict,
        description='Fields of the recipe to change, the rest kept, e.g. {"imgsz": 320, '
        '"classifier.time_hours": 0.25}; on the command line: --train.imgsz 320.',
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    reuse: bool = Field(
        default=True,
        description="Resume or reuse the run folder of the same dataset and recipe, and "
        "train nothing when a version of them is registered already; false always trains anew.",
    )
    register_unchanged: bool = Field(
        default=False,
        description="Register a new version even when this dataset and recipe are registered "
        "already (the gate then compares it with the champion as usual).",
    )

    @model_validator(mode="after")
    def _changes_fit_the_recipe(self) -> Self:
        if self.train_changes:
            self.recipe()  # a field the recipe lacks, or a value it refuses, fails here
        return self

    def recipe(self) -> TrainConfig:
        """The recipe in force: the explicit one, else the named profile, with the changes."""
        return with_changes(self.train or get_profile(self.profile), self.train_changes)


class TrainParams(RecipeParams):
    """Which dataset to train on, with which recipe, and how to judge the result."""

    dataset: DatasetRef = Field(description="The dataset, as the data flow returned it.")
    int8: bool = Field(
        default=True,
        description="Also build an int8 ONNX variant; it ships only if its valid top-1 and "
        f"mAP50 are both within {INT8_TOLERANCE} of fp32's.",
    )
    promote: bool = Field(
        default=True,
        description="Let the promotion gate judge the new version (it may become champion); "
        "false registers it as a trial, judged by no gate, moving no alias.",
    )


class TrainOutcome(BaseModel):
    """What the training flow produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelVersion
    decision: PromotionDecision
    train_run_id: str
    evaluate_run_id: str
    metrics: dict[str, float]
