"""Letter classifier training: recipe keys, crop reuse, and a finished training reused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.training.classifier import DONE_MARKER, train_classifier
from tasks.training.classifier_config import ClassifierConfig
from tasks.training.profiles import PROFILES


def test_keys_follow_the_recipe_not_the_placement():
    base = ClassifierConfig(epochs=3)
    assert base.key("d") == base.model_copy(update={"workers": 9}).key("d")
    # How the trained classifier is run (mirror) does not change what is trained.
    assert base.key("d") == base.model_copy(update={"mirror": True}).key("d")
    assert base.key("d") != base.model_copy(update={"lr0": 0.01}).key("d")
    assert base.key("d") != base.key("e")
    # Crops depend on how they are cut, not on how the classifier then trains.
    assert base.crops_key("d") == base.model_copy(update={"lr0": 0.01}).crops_key("d")
    assert base.crops_key("d") != base.model_copy(update={"jitter": 0.0}).crops_key("d")
    with pytest.raises(ValidationError):
        ClassifierConfig(imgsz=128, colour="blue")  # type: ignore[call-arg]


def test_cpu_profile_is_two_stage_within_two_hours():
    cpu = PROFILES["cpu"]
    assert cpu.classifier is not None
    assert cpu.optimizer == "AdamW" and cpu.classifier.optimizer == "AdamW"
    # The stages train side by side, one core each.
    assert max(cpu.time_hours, cpu.classifier.time_hours) <= 2.0
    assert cpu.ultralytics_args()["single_cls"] is True
    assert "single_cls" not in PROFILES["smoke"].ultralytics_args()


def test_a_finished_training_is_reused(two_stage_model: Path, subset_dataset: Path):
    runs = two_stage_model.parent / "runs"
    config = ClassifierConfig(  # as the fixture's
        model="yolo11n-cls.yaml", imgsz=64, epochs=2, batch=16, workers=0
    )
    run_dir = runs / config.key("subset")
    marker = (run_dir / DONE_MARKER).read_text()
    before = (run_dir / "weights" / "best.pt").stat().st_mtime_ns
    again = train_classifier(subset_dataset, "subset", config, runs)
    assert again.best == run_dir / "weights" / "best.pt"
    assert (run_dir / "weights" / "best.pt").stat().st_mtime_ns == before, "not retrained"
    assert again.model_dump_json(indent=2) == marker
    assert [p.name for p in (runs / "crops").iterdir()] == [config.crops_key("subset")]
    assert again.epochs_completed == 2
