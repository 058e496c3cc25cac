"""Choosing the fusion rule: temperatures on valid, the weight by best worst case."""

from __future__ import annotations

import numpy as np

from tasks.inference.fusion import FusionRule
from tasks.training.fusion_choice import (
    EVEN,
    Readings,
    choose_rule,
    correct,
    fit_temperature,
    shift,
)
from tasks.training.landmark_config import LandmarkConfig


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_the_fitted_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2000, 5))
    labels = np.array([rng.choice(5, p=p) for p in _softmax(logits)])
    overconfident = _softmax(logits * 3)  # as if the true temperature were 3
    assert 2.4 < fit_temperature(overconfident, labels) < 3.6
    assert 0.8 < fit_temperature(_softmax(logits), labels) < 1.25


def _readings(pixel_right: list[bool], landmark_right: list[bool]) -> Readings:
    """Two-letter readings where each side is confidently right or wrong per box."""
    labels = np.zeros(len(pixel_right), int)

    def side(right: list[bool], sure: float) -> np.ndarray:
        return np.array([[sure, 1 - sure] if r else [1 - sure, sure] for r in right])

    return Readings(side(pixel_right, 0.9), side(landmark_right, 0.8), labels)


def test_a_box_without_a_hand_is_never_right() -> None:
    readings = _readings([True, True], [True, True])
    readings.landmark[1] = np.nan
    assert correct(readings, FusionRule()) == 1


def test_the_even_mean_stays_unless_another_weight_is_clearly_better() -> None:
    # Valid: pixels right on 20 of 20, landmarks on 18. Shifted: pixels 10, landmarks 19.
    valid = _readings([True] * 20, [True] * 18 + [False] * 2)
    shifted = _readings([True] * 10 + [False] * 10, [True] * 19 + [False])
    choice = choose_rule(valid, shifted, LandmarkConfig(), "abc")
    # Any weight > 0.5 reads every shifted landmark-right box; 0.5 loses the pixel-wrong ones
    # where the pixel side is surer (0.9 against 0.8): the worst case clearly favours landmarks.
    assert choice.rule.landmark_weight > EVEN
    assert choice.rule.task_sha256 == "abc"
    assert choice.metrics["box_valid_top1_pixel"] == 1.0
    assert choice.metrics["shifted_valid_top1_landmark"] == 0.95
    # Where the best beats the even mean by no more than two images, the even mean stays.
    near = _readings([True] * 19 + [False], [True] * 20)
    assert choose_rule(near, near, LandmarkConfig(), None).rule.landmark_weight == EVEN


def test_a_fixed_weight_in_the_recipe_is_kept() -> None:
    valid = _readings([True] * 10, [True] * 10)
    choice = choose_rule(valid, valid, LandmarkConfig(landmark_weight=0.35), None)
    assert choice.rule.landmark_weight == 0.35, "off the candidates' grid too"
    assert choice.metrics["box_valid_top1_fused"] == 1.0


def test_the_shift_changes_a_frame_but_keeps_its_size() -> None:
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = shift(image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() > 5


def test_part_scores_read_each_part_of_a_fused_model(fused_model, subset_dataset, two_stage_model):
    from tasks.training.fusion_choice import part_scores

    parts = part_scores(fused_model, subset_dataset / "data.yaml", "valid")
    assert set(parts) == {"pixel", "landmark", "fused"}
    assert all(0.0 <= value <= 1.0 for value in parts.values())
    assert part_scores(two_stage_model, subset_dataset / "data.yaml", "valid") == {}, (
        "a model without landmarks has no parts to show"
    )


def test_the_stage_summary_shows_what_was_missed_and_chosen(tmp_path):
    from tasks.training.landmark_stage import LandmarkStage, summary
    from tasks.training.weights import StartingWeights

    valid = _readings([True] * 10, [True] * 9 + [False])
    choice = choose_rule(valid, valid, LandmarkConfig(), "abc")
    metrics = {**choice.metrics, "landmark_train_missing": 3.0, "landmark_valid_missing": 1.0}
    start = StartingWeights(requested="hand_landmarker.task")
    stage = LandmarkStage(tmp_path, choice.rule, metrics, choice.rows, start)
    text = summary(stage)
    assert "no hand found in 3 train and 1 valid" in text
    assert "| landmark | 0.900 | 0.900 |" in text and f"{choice.rule.landmark_weight:.1f}" in text
