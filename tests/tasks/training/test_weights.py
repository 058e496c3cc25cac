"""Pretrained weights: where they are found, what loads, and the fallback to scratch."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch

from tasks.training import architectures
from tasks.training.weights import STAND_INS, resolve_weights, transfer

PRETRAINED_FILE = "yolov5n-coco-backbone.pt"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_weights_folder_is_searched_first_and_knows_the_offline_stand_in(
    shared_weights: Path, tmp_path: Path
):
    called: list[str] = []
    found = resolve_weights(
        "yolov5nu.pt", shared_weights, tmp_path, download=lambda s, p: called.append(s)
    )
    assert found.path == shared_weights / PRETRAINED_FILE
    assert found.origin == "weights_dir" and found.pretrained
    assert found.sha256 == _sha(shared_weights / PRETRAINED_FILE)
    assert called == [], "a file at hand is never downloaded"
    assert found.record()["name"] == PRETRAINED_FILE
    assert found.record()["requested"] == "yolov5nu.pt"
    assert PRETRAINED_FILE in STAND_INS["yolov5nu.pt"]


def test_an_exact_name_in_the_folder_wins_over_its_stand_in(tmp_path: Path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "yolov5nu.pt").write_bytes(b"online copy")
    (folder / PRETRAINED_FILE).write_bytes(b"stand-in")
    found = resolve_weights("yolov5nu.pt", folder, tmp_path / "cache")
    assert found.path == folder / "yolov5nu.pt"


def test_a_local_path_is_used_as_it_is(tmp_path: Path):
    local = tmp_path / "mine.pt"
    local.write_bytes(b"weights")
    found = resolve_weights(str(local), None, tmp_path / "cache")
    assert (found.path, found.origin) == (local, "local")
    assert found.sha256 == hashlib.sha256(b"weights").hexdigest()


def test_a_download_lands_in_the_cache_once(tmp_path: Path):
    calls: list[str] = []

    def fake_download(source: str, target: Path) -> None:
        calls.append(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"downloaded")

    url = "https://user:secret@example.org/models/best.pt?token=abc"
    first = resolve_weights(url, None, tmp_path / "cache", download=fake_download)
    again = resolve_weights(url, None, tmp_path / "cache", download=fake_download)
    assert first.origin == "download" and first.path.name == "best.pt"
    assert first.path.parent.parent == tmp_path / "cache", "one entry per host and path"
    assert "secret" not in str(first.path) and "abc" not in str(first.path)
    assert again.path == first.path and calls == [url], "the cached file is reused"


def test_no_weights_to_be_had_falls_back_to_scratch_in_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    def offline(source: str, target: Path) -> None:
        raise OSError("Name or service not known")

    with caplog.at_level(logging.WARNING, logger="tasks.training.weights"):
        start = resolve_weights("yolov5nu.pt", tmp_path / "empty", tmp_path / "c", offline)
    assert not start.pretrained and start.path is None and start.origin == "scratch"
    assert "yolov5nu.pt" in start.reason and "Name or service not known" in start.reason
    assert str(tmp_path / "empty") in start.reason, "says where it looked"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "from scratch" in lines[0] and "yolov5nu.pt" in lines[0]
    assert start.describe().startswith("scratch (")
    assert start.record()["name"] == "scratch"


def test_a_recipe_without_weights_is_scratch_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING, logger="tasks.training.weights"):
        start = resolve_weights(None, tmp_path, tmp_path)
    assert not start.pretrained and caplog.records == []


def test_a_missing_local_file_is_not_downloaded(tmp_path: Path):
    def never(source: str, target: Path) -> None:
        raise AssertionError("a path is not a download")

    start = resolve_weights(str(tmp_path / "nope.pt"), None, tmp_path, download=never)
    assert not start.pretrained and "is not a file" in start.reason


def test_the_classifier_takes_the_backbone_and_its_head_starts_fresh(shared_weights: Path):
    from ultralytics import YOLO

    start = resolve_weights("yolov5nu.pt", shared_weights, shared_weights)
    model = YOLO(architectures.resolve("yolov5n-cls.yaml"))
    counted = transfer(model, start)
    assert counted is not None
    transferred, total = counted.count
    # Backbone layers 0-9 (198 tensors); the Classify head (8) has no counterpart.
    assert (transferred, total) == (198, 206)
    source = torch.load(start.path, map_location="cpu", weights_only=False)["model"]
    conv = "model.0.conv.weight"
    assert torch.equal(model.model.state_dict()[conv], source.state_dict()[conv].float())


def test_the_detector_takes_every_tensor(shared_weights: Path):
    from ultralytics import YOLO

    start = resolve_weights("yolov5nu.pt", shared_weights, shared_weights)
    counted = transfer(YOLO("yolov5n.yaml"), start)
    assert counted is not None and counted.count == (427, 427)


def test_scratch_transfers_nothing():
    from ultralytics import YOLO

    model = YOLO("yolov5n.yaml")
    before = model.model.state_dict()["model.0.conv.weight"].clone()
    assert transfer(model, resolve_weights(None, None, Path("."))) is None
    assert torch.equal(model.model.state_dict()["model.0.conv.weight"], before)


@pytest.mark.slow
def test_a_short_fine_tune_starts_from_the_shared_weights(
    shared_weights: Path, subset_dataset: Path, tmp_path: Path
):
    from tasks.training.classifier import train_classifier
    from tasks.training.classifier_config import ClassifierConfig

    config = ClassifierConfig(
        model="yolov5n-cls.yaml", weights="yolov5nu.pt", imgsz=64, epochs=1, batch=16, workers=0
    )
    result = train_classifier(
        subset_dataset, "subset", config, tmp_path / "runs", weights_dir=shared_weights
    )
    assert result.transferred == (198, 206), "the trainer's model holds the backbone"
    assert result.started_from.sha256 == _sha(shared_weights / PRETRAINED_FILE)
    assert result.started_from.origin == "weights_dir"
    # Another starting point is another run folder (the key holds the weights' digest).
    assert result.run_dir.name == config.key("subset", result.started_from.sha256)
    assert result.run_dir.name != config.key("subset")
