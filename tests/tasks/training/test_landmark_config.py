"""The landmark recipe (:class:`LandmarkConfig`): defaults, bounds, immutability, its place in
a two-stage ``TrainConfig``.

Plain pydantic validation, no model or data: every test runs in milliseconds.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tasks.inference.landmarks import CROP_PAD, PRESENCE, TASK_FILE, TASK_URL
from tasks.training.classifier_config import ClassifierConfig
from tasks.training.detector import TrainConfig
from tasks.training.landmark_config import LandmarkConfig


def test_defaults_read_hands_as_the_recognizer_does() -> None:
    config = LandmarkConfig()
    # The crop margin and the least presence are the reader's own: trained as it will read.
    assert (config.crop_pad, config.presence) == (CROP_PAD, PRESENCE)
    assert config.task == TASK_URL and config.task.endswith(f"/{TASK_FILE}")
    assert config.landmark_weight is None, "by default the flow chooses the weight on valid"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden", 7),
        ("hidden", 2049),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("epochs", 0),
        ("lr", 0.0),
        ("weight_decay", -1e-4),
        ("rotate_deg", 91.0),
        ("stretch", 1.0),
        ("jitter", 1.0),
        ("mirror", 1.5),
        ("crop_pad", -0.1),
        ("presence", 1.01),
        ("landmark_weight", 1.2),
        ("landmark_weight", -0.1),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field) as caught:
        LandmarkConfig(**{field: value})
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize(
    "edges",
    [
        {"hidden": 8, "dropout": 0.0, "rotate_deg": 0.0, "mirror": 0.0, "landmark_weight": 0.0},
        {
            "hidden": 2048,
            "rotate_deg": 90.0,
            "mirror": 1.0,
            "presence": 1.0,
            "landmark_weight": 1.0,
        },
    ],
    ids=["lowest", "highest"],
)
def test_the_edges_of_each_range_are_accepted(edges: dict[str, Any]) -> None:
    config = LandmarkConfig(**edges)
    assert {name: getattr(config, name) for name in edges} == edges


def test_a_misspelt_setting_is_refused_not_ignored() -> None:
    with pytest.raises(ValidationError, match="epoch") as caught:
        LandmarkConfig.model_validate({"epoch": 10})  # "epochs" meant
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_a_recipe_cannot_change_once_made() -> None:
    config = LandmarkConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.epochs = 1  # type: ignore[misc]
    assert config.epochs == LandmarkConfig().epochs


def test_the_recipe_survives_a_json_round_trip() -> None:
    config = LandmarkConfig(hidden=64, epochs=40, landmark_weight=0.35, seed=7)
    again = LandmarkConfig.model_validate_json(config.model_dump_json())
    assert again == config and hash(again) == hash(config)
    assert again != LandmarkConfig(hidden=64, epochs=40, landmark_weight=0.35, seed=8)


def test_landmarks_belong_to_a_two_stage_recipe_only() -> None:
    with pytest.raises(ValidationError, match="landmarks need a classifier"):
        TrainConfig(landmarks=LandmarkConfig())
    two_stage = TrainConfig(classifier=ClassifierConfig(), landmarks={"epochs": 12})
    assert two_stage.landmarks == LandmarkConfig(epochs=12)


def test_a_landmark_recipe_change_keeps_the_detectors_run_folder() -> None:
    classifier = ClassifierConfig()
    before = TrainConfig(classifier=classifier, landmarks=LandmarkConfig())
    after = TrainConfig(classifier=classifier, landmarks=LandmarkConfig(epochs=300))
    assert after.key("data1") == before.key("data1")
