"""The training flow's parameters (forms in the Prefect UI) and what it returns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.records import DatasetRef, ModelVersion
from tasks.registry.int8_choice import INT8_TOLERANCE
from tasks.registry.promotion import PromotionDecision
from tasks.training.detector import TrainConfig
from tasks.training.profiles import get_profile

# Scores the evaluation reports on the test split; the gate compares one of them.
GateMetric = Literal["test_map50", "test_map50_95", "test_top1", "test_precision", "test_recall"]


class GateConfig(BaseModel):
    """How a candidate is compared with the champion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: GateMetric = Field(
        default="test_top1",
        description="Test-split metric compared (higher is better): detection mAP or the "
        "top-1 letter accuracy a learner feels.",
    )
    margin: float = Field(
        default=0.0, description="The candidate must beat the champion by more than this."
    )


class TrainParams(BaseModel):
    """Which dataset to train on, with which recipe, and how to judge the result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: DatasetRef = Field(description="The dataset, as the data flow returned it.")
    profile: str = Field(
        default="cpu",
        description="Training recipe: smoke, demo, cpu (two-stage, 2 h on a CPU) or gpu.",
    )
    train: TrainConfig | None = Field(
        default=None, description="A full recipe; overrides the profile when given."
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    reuse: bool = Field(
        default=True,
        description="Resume or reuse the run folder of the same dataset and recipe; "
        "false always trains anew.",
    )
    int8: bool = Field(
        default=True,
        description="Also build an int8 ONNX variant; it ships only if its test mAP50 is "
        f"within {INT8_TOLERANCE} of fp32.",
    )

    def recipe(self) -> TrainConfig:
        """The recipe in force: the explicit one, else the named profile."""
        return self.train or get_profile(self.profile)


class TrainOutcome(BaseModel):
    """What the training flow produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelVersion
    decision: PromotionDecision
    train_run_id: str
    evaluate_run_id: str
    metrics: dict[str, float]
