"""Assembling a two-stage model folder: complete or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.inference.bundle import assemble, crop_settings, extra_classifiers, is_two_stage


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    names = ("model.onnx", "classifier.onnx", "best.pt")
    paths = []
    for name in names:
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
        paths.append(path)
    return paths[0], paths[1], paths[2]


def test_assemble_writes_every_file_and_the_crop_margin(tmp_path: Path):
    detector, classifier, weights = _files(tmp_path)
    folder = assemble(detector, classifier, weights, tmp_path / "model", pad=0.3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "classifier.onnx", "classifier.pt", "metadata.json", "model.onnx",
    ]  # fmt: skip
    assert json.loads((folder / "metadata.json").read_text()) == {
        "two_stage": True,
        "crop_pad": 0.3,
        "crop_mirror": False,
    }
    assert is_two_stage(folder) and not is_two_stage(tmp_path)
    assert crop_settings(folder) == (0.3, False)
    mirrored = assemble(detector, classifier, weights, tmp_path / "m2", pad=0.2, mirror=True)
    assert crop_settings(mirrored) == (0.2, True)


def test_int8_detector_replaces_the_fp32_one(tmp_path: Path):
    detector, classifier, weights = _files(tmp_path)
    int8 = tmp_path / "in" / "model.int8.onnx"
    int8.write_bytes(b"int8")
    folder = assemble(detector, classifier, weights, tmp_path / "m", pad=0.2, detector_int8=int8)
    assert (folder / "model.int8.onnx").read_bytes() == b"int8"
    assert not (folder / "model.onnx").exists()


def test_a_failed_assembly_leaves_the_old_folder_and_no_debris(tmp_path: Path):
    detector, classifier, weights = _files(tmp_path)
    target = assemble(detector, classifier, weights, tmp_path / "model", pad=0.2)
    with pytest.raises(FileNotFoundError):
        assemble(detector, tmp_path / "missing.onnx", weights, target, pad=0.2)
    assert (target / "classifier.onnx").read_bytes() == b"classifier.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "model"]


def test_ensemble_members_land_beside_the_first_classifier(tmp_path: Path):
    detector, classifier, weights = _files(tmp_path)
    assert extra_classifiers(assemble(detector, classifier, weights, tmp_path / "one", 0.2)) == []
    second = tmp_path / "in" / "second.onnx"
    second.write_bytes(b"second")
    folder = assemble(
        detector, classifier, weights, tmp_path / "m", pad=0.2, extra_classifiers=[second]
    )
    assert (folder / "classifier-1.onnx").read_bytes() == b"second"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["classifiers"] == ["classifier.onnx", "classifier-1.onnx"]
    assert extra_classifiers(folder) == [folder / "classifier-1.onnx"]


def test_a_fused_folder_carries_its_landmark_files_rule_and_figures(tmp_path: Path):
    from tasks.inference.bundle import bundle_artifacts, fusion_parts
    from tasks.inference.fusion import FusionRule

    detector, classifier, weights = _files(tmp_path)
    lm, task = tmp_path / "in" / "lm.onnx", tmp_path / "in" / "x.task"
    lm.write_bytes(b"mlp")
    task.write_bytes(b"bundle")
    rule = FusionRule(landmark_weight=0.7, pixel_temperature=1.2, task_sha256="ab")
    folder = assemble(
        detector, classifier, weights, tmp_path / "model", pad=0.2,
        landmarks=(lm, task, rule), fusion_figures={"box_valid_top1_fused": 0.9},
    )  # fmt: skip
    assert (folder / "landmarks.onnx").read_bytes() == b"mlp"
    assert (folder / "hand_landmarker.task").read_bytes() == b"bundle"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["fusion_figures"] == {"box_valid_top1_fused": 0.9}
    assert fusion_parts(folder) == (
        folder / "landmarks.onnx",
        folder / "hand_landmarker.task",
        rule,
    )
    artifacts = bundle_artifacts(folder)
    assert artifacts["landmarks"].name == "landmarks.onnx"
    assert artifacts["hand_landmarker"].name == "hand_landmarker.task"
    # An int8 variant assembled from it (as int8_choice does) is fused like the original.
    again = assemble(
        detector, classifier, weights, tmp_path / "int8", pad=0.2, detector_int8=detector,
        landmarks=fusion_parts(folder),
    )  # fmt: skip
    assert fusion_parts(again) is not None
    plain = assemble(detector, classifier, weights, tmp_path / "plain", pad=0.2)
    assert fusion_parts(plain) is None and "landmarks" not in bundle_artifacts(plain)
