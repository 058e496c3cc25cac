"""The personalize flow: a learner's model under its own alias, champion untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from mlflow import MlflowClient

from flows.data import DataParams
from flows.personalize import PersonalizeParams, alias_for, personalize_flow
from flows.pipeline import PipelineParams, pipeline_flow
from tasks.core.records import Box
from tasks.core.settings import get_settings
from tasks.data.augment_config import AugmentConfig
from tasks.data.captures import learner_dir, read_bursts, save_burst
from tasks.data.yolo_format import list_images, read_boxes_xyxy
from tasks.registry.models import CHAMPION, MODEL_NAME


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FINGERSPELL_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _teach(dataset: Path, root: Path, letters: str, bursts: int) -> None:
    """Bursts made of the subset's train photos of each letter, with their boxes."""
    for letter in letters:
        photos = [p for p in list_images(dataset / "train" / "images") if p.name[0] == letter]
        for n in range(bursts):
            image = cv2.imread(str(photos[n % len(photos)]))
            label = dataset / "train" / "labels" / f"{photos[n % len(photos)].stem}.txt"
            x1, y1, x2, y2 = read_boxes_xyxy(label, image.shape[1], image.shape[0])[0][0]
            box = Box(x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2))
            save_burst(root, letter, [image, image.copy()], [box, box])


def test_learner_names_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match="lower-case letters"):
        PersonalizeParams(learner="../ann")
    assert alias_for("ann") == "personal-ann"


def test_without_a_held_out_burst_it_says_what_to_teach(home: Path, subset_dataset: Path):
    _teach(subset_dataset, learner_dir(home, "ann"), "A", bursts=1)  # one burst: train only
    with pytest.raises(ValueError, match="at least two bursts"):
        personalize_flow(PersonalizeParams(learner="ann", source=str(subset_dataset)))


@pytest.mark.slow
def test_personalize_registers_the_learners_alias_and_leaves_the_champion(
    home: Path, subset_dataset: Path
):
    data = DataParams(source=str(subset_dataset), augment=AugmentConfig(copies=1))
    general = pipeline_flow(PipelineParams(profile="smoke", data=data))
    captures = learner_dir(home, "ann")
    _teach(subset_dataset, captures, "ABC", bursts=3)
    assert {b.split for b in read_bursts(captures)} == {"train", "valid"}

    outcome = personalize_flow(
        PersonalizeParams(learner="ann", minutes=None, source=str(subset_dataset))
    )

    uri = get_settings().tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champion.version) == general.model.version
    mine = client.get_model_version_by_alias(MODEL_NAME, "personal-ann")
    assert str(mine.version) == outcome.model.version != general.model.version
    assert mine.tags["learner"] == "ann" and mine.tags["profile"] == "personal"
    assert outcome.champion_version == general.model.version
    for scores in (outcome.before, outcome.after):
        assert set(scores) == {"base", "learner"}
        assert all(0.0 <= value <= 1.0 for value in scores.values())
    assert outcome.before["base"] == pytest.approx(general.metrics["valid_top1"])
