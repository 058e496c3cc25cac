"""The personal recipe: the champion's own recipe, from its own weights, gently."""

from __future__ import annotations

from pathlib import Path

from tasks.training.profiles import PERSONAL_LR, get_profile, personal


def test_a_two_stage_champion_is_fine_tuned_from_both_of_its_files(tmp_path: Path):
    (tmp_path / "best.pt").touch()
    (tmp_path / "classifier.pt").touch()

    recipe = personal({"profile": "demo", "imgsz": 256}, tmp_path, minutes=4)

    demo = get_profile("demo")
    assert recipe.weights == str(tmp_path / "best.pt") and recipe.imgsz == 256
    assert recipe.classifier is not None and recipe.classifier.weights == str(
        tmp_path / "classifier.pt"
    )
    assert recipe.time_hours == recipe.classifier.time_hours == 4 / 60
    assert recipe.overrides["lr0"] == recipe.classifier.lr0 == PERSONAL_LR
    assert recipe.overrides["warmup_epochs"] == recipe.classifier.warmup_epochs == 0
    assert recipe.model == demo.model and recipe.classifier.imgsz == demo.classifier.imgsz


def test_a_one_stage_champion_keeps_its_profiles_epochs_without_a_budget(tmp_path: Path):
    recipe = personal({"profile": "smoke", "imgsz": 160}, tmp_path, minutes=None)
    assert recipe.classifier is None and recipe.epochs == get_profile("smoke").epochs
    assert recipe.weights == str(tmp_path / "best.pt")


def test_a_personal_recipe_refits_landmarks_only_beside_a_classifier(tmp_path: Path):
    """A two-stage champion's landmark classifier is refit on base + captures; a champion
    without a classifier file gets no landmark stage (it would have no pixels to fuse)."""
    (tmp_path / "best.pt").touch()
    one_stage = personal({"profile": "demo", "imgsz": 256}, tmp_path, minutes=4)
    assert one_stage.classifier is None and one_stage.landmarks is None

    (tmp_path / "classifier.pt").touch()
    two_stage = personal({"profile": "demo", "imgsz": 256}, tmp_path, minutes=4)
    assert two_stage.landmarks == get_profile("demo").landmarks is not None
