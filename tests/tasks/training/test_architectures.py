"""Architectures shipped as overrides of ultralytics' yaml files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.training import architectures
from tasks.training.detector import TrainConfig


def _parameters(model: str) -> int:
    from ultralytics import YOLO

    return sum(p.numel() for p in YOLO(model).model.parameters())


def test_slim_hand_detector_builds_as_one_class_yolo11_with_a_third_of_the_weights(tmp_path):
    from ultralytics import YOLO

    path = architectures.resolve("yolo11-hand-slim.yaml", tmp_path)
    model = YOLO(path)
    head = model.model.model[-1]
    assert model.task == "detect" and type(head).__name__ == "Detect" and head.nc == 1
    assert _parameters(path) < _parameters("yolo11n.yaml") / 3


def test_p45_hand_detector_predicts_from_strides_16_and_32_only(tmp_path):
    from ultralytics import YOLO

    path = architectures.resolve("yolo11-hand-p45.yaml", tmp_path)
    model = YOLO(path)
    head = model.model.model[-1]
    assert type(head).__name__ == "Detect" and head.nc == 1 and head.nl == 2
    assert [int(s) for s in model.model.stride] == [16, 32]
    slim = architectures.resolve("yolo11-hand-slim.yaml", tmp_path)
    assert _parameters(path) < _parameters(slim)


def test_other_names_reach_ultralytics_unchanged():
    for name in ("yolo11n.yaml", "yolo11n.pt", "/somewhere/yolo11-hand-slim.yaml", "nope.yaml"):
        assert architectures.resolve(name) == name
        assert architectures.fingerprint(name) is None


def test_editing_a_shipped_file_changes_the_run_key(tmp_path, monkeypatch):
    monkeypatch.setattr(architectures, "FOLDER", tmp_path)
    spec = tmp_path / "tiny.yaml"
    spec.write_text("base: yolo11.yaml\nnc: 1\ndepth_multiple: 0.5\nwidth_multiple: 0.125\n")
    config = TrainConfig(model="tiny.yaml")
    first = config.key("dataset")
    spec.write_text("# a comment\n" + spec.read_text())
    assert config.key("dataset") == first, "a comment is not a change"
    spec.write_text("base: yolo11.yaml\nnc: 1\ndepth_multiple: 0.5\nwidth_multiple: 0.25\n")
    assert config.key("dataset") != first
    built = Path(architectures.resolve("tiny.yaml", tmp_path / "out"))
    assert "width_multiple: 0.25" in built.read_text() and "scales" not in built.read_text()


def test_a_file_without_base_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(architectures, "FOLDER", tmp_path)
    (tmp_path / "broken.yaml").write_text("nc: 1\n")
    with pytest.raises(ValueError, match=r"broken\.yaml.*base"):
        architectures.resolve("broken.yaml", tmp_path / "out")
