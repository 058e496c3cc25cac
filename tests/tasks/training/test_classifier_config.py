"""The letter classifier's recipe: validation, and which fields its keys depend on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.training.classifier_config import ClassifierConfig


def test_defaults_and_crop_side():
    config = ClassifierConfig()
    assert config.model == "yolov5n-cls.yaml" and config.imgsz == 128
    assert config.crop_side == 160
    assert ClassifierConfig(imgsz=100).crop_side == 125


@pytest.mark.parametrize(
    "fields",
    [{"imgsz": 16}, {"jitter": 0.5}, {"fraction": 0}, {"pad": 1.5}, {"typo": 1}, {"lr0": 0}],
)
def test_bad_recipes_are_refused(fields: dict[str, object]):
    with pytest.raises(ValidationError):
        ClassifierConfig(**fields)  # type: ignore[arg-type]


def test_the_key_is_stable_and_ignores_how_it_runs():
    base = ClassifierConfig()
    key = base.key("data1")
    assert len(key) == 16 and key == ClassifierConfig().key("data1")
    assert ClassifierConfig(workers=0, mirror=True).key("data1") == key  # not what is trained
    assert base.key("data2") != key
    assert base.key("data1", "ab" * 32) != key  # other starting weights
    assert ClassifierConfig(lr0=0.001).key("data1") != key
    assert ClassifierConfig(warmup_epochs=0).key("data1") != key


def test_a_shipped_architecture_is_keyed_by_its_content(monkeypatch: pytest.MonkeyPatch):
    from tasks.training import architectures

    config = ClassifierConfig()
    key = config.key("data1")
    monkeypatch.setattr(architectures, "fingerprint", lambda model: "changed-yaml")
    assert config.key("data1") != key


def test_crops_depend_only_on_how_crops_are_cut():
    base = ClassifierConfig()
    crops = base.crops_key("data1")
    assert ClassifierConfig(lr0=0.01, epochs=3, mirror=True).crops_key("data1") == crops
    for changed in ({"pad": 0.3}, {"jitter": 0.1}, {"train_copies": 2}, {"seed": 1},
                    {"imgsz": 96}):  # fmt: skip
        assert ClassifierConfig(**changed).crops_key("data1") != crops, changed  # type: ignore[arg-type]
    assert base.crops_key("data2") != crops
