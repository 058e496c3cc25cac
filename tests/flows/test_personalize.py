"""The personalize flow: a learner's model under its own alias, champion untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import onnxruntime
import pytest
import torch
from mlflow import MlflowClient

from flows.data import DataParams
from flows.personalize import PersonalizeParams, alias_for, personalize_flow
from flows.pipeline import PipelineParams, pipeline_flow
from tasks.core.records import LETTERS, Box
from tasks.core.settings import get_settings
from tasks.data.augment_config import AugmentConfig
from tasks.data.captures import learner_dir, read_bursts, save_burst
from tasks.data.yolo_format import list_images, read_boxes_xyxy
from tasks.inference.bundle import bundle_artifacts, crop_settings, is_two_stage
from tasks.registry import mlflow_runs
from tasks.registry.models import (
    CHAMPION,
    MODEL_NAME,
    download_version,
)
from tasks.registry.publish import log_model, model_metadata, register
from tasks.registry.tracking import open_job
from tasks.training.profiles import get_profile, personal


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
    assert not outcome.reused

    # Personalize again with nothing new: the same version keeps the alias, none is added.
    client.delete_registered_model_alias(MODEL_NAME, "personal-ann")
    again = personalize_flow(
        PersonalizeParams(learner="ann", minutes=None, source=str(subset_dataset))
    )
    assert again.reused and again.model.version == outcome.model.version
    assert (again.before, again.after) == (outcome.before, outcome.after)
    assert str(client.get_model_version_by_alias(MODEL_NAME, "personal-ann").version) == (
        outcome.model.version
    )
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 2


def test_the_recipe_follows_the_champions_files_and_sizes(tmp_path: Path):
    (tmp_path / "best.pt").touch()
    torch.save({"train_args": {"imgsz": 64}}, tmp_path / "classifier.pt")
    meta = {"profile": "smoke", "imgsz": 160, "crop_pad": 0.3, "crop_mirror": True}

    # smoke names no classifier, but this champion has one: it keeps it, as it was trained.
    recipe = personal(meta, tmp_path, minutes=0.5)

    stage2 = recipe.classifier
    assert stage2 is not None and stage2.weights == str(tmp_path / "classifier.pt")
    assert (stage2.imgsz, stage2.pad, stage2.mirror) == (64, 0.3, True)
    assert recipe.imgsz == 160 and recipe.time_hours == stage2.time_hours == 0.5 / 60
    (tmp_path / "classifier.pt").unlink()
    assert personal({"profile": "demo", "imgsz": 256}, tmp_path, None).classifier is None
    assert get_profile("demo").classifier is not None


def _register_champion(folder: Path) -> str:
    """Log a two-stage folder as the champion the way the train flow logs one, untrained."""
    job = open_job()
    client, experiment_id = job.client, job.experiment_id
    letters = (folder / "classifier.pt").read_bytes()
    detector = next(
        p for p in (folder.parent / "runs").rglob("best.pt") if p.read_bytes() != letters
    )
    meta = model_metadata(LETTERS, 160, "subset", {}, profile="smoke", bundle=folder)
    with mlflow_runs.run(client, experiment_id, "train") as run:
        uri = log_model(run, detector, folder / "model.onnx", meta, extra=bundle_artifacts(folder))
    version = register(uri, {"profile": "smoke"})
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version.version)
    return version.version


@pytest.mark.slow
def test_a_two_stage_champion_is_fine_tuned_in_both_stages_at_its_sizes(
    home: Path, subset_dataset: Path, two_stage_model: Path
):
    champion = _register_champion(two_stage_model)  # classifier at 64 px: not a profile's
    _teach(subset_dataset, learner_dir(home, "bo"), "ABC", bursts=3)

    outcome = personalize_flow(
        PersonalizeParams(learner="bo", minutes=0.25, source=str(subset_dataset))
    )

    uri = get_settings().tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == champion
    mine = client.get_model_version_by_alias(MODEL_NAME, "personal-bo")
    assert str(mine.version) == outcome.model.version != champion
    for split in ("base", "learner"):
        for when, scores in (("before", outcome.before), ("after", outcome.after)):
            assert float(mine.tags[f"metric.{split}_top1_{when}"]) == scores[split]
    assert mine.tags["learner"] == "bo" and mine.tags["started_from.champion"] == f"v{champion}"
    files = download_version(outcome.model.version, uri)
    assert is_two_stage(files.model)
    assert crop_settings(files.model) == crop_settings(two_stage_model)
    session = onnxruntime.InferenceSession(str(files.artifacts / "classifier.onnx"))
    assert session.get_inputs()[0].shape[2] == 64
    # One run tree: both stages' runs nest under the personalize run.
    train = client.get_run(mine.run_id)
    top = client.get_run(train.data.tags["mlflow.parentRunId"])
    assert top.info.run_name == "personalize-bo"
    nested = client.search_runs(
        [top.info.experiment_id], f"tags.mlflow.parentRunId = '{top.info.run_id}'"
    )
    assert {run.info.run_name for run in nested} >= {"train", "train-classifier"}
