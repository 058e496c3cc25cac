"""Fusion: calibration, the fused mean, and a fused model that reads hands and never faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.boxes import corners, iou
from support.scenes import Corners, face_and_hand, face_beside_photo, hand_boxes

from tasks.data.yolo_format import list_images
from tasks.inference.fusion import FusedReader, FusionRule, calibrated, fuse
from tasks.inference.landmarks import LandmarkError, hand_box
from tasks.inference.recognizer import Recognizer


@pytest.fixture
def fused(fused_model: Path) -> FusedReader:
    """A fresh fused reader of the test model (a test may switch its palm detector off)."""
    reader = Recognizer.load(str(fused_model)).fused
    assert reader is not None
    return reader


def mirrored_hand_at_left(scene: np.ndarray, hand: Corners) -> Corners:
    """Paste the scene's hand again, mirrored, at its left edge: a second signing hand."""
    x0, y0, x1, y1 = (int(v) for v in hand)
    scene[y0:y1, 20 : 20 + (x1 - x0)] = cv2.flip(scene[y0:y1, x0:x1], 1)
    return (20.0, hand[1], 20.0 + hand[2] - hand[0], hand[3])


def test_calibration_keeps_the_order_and_sharpens_or_softens() -> None:
    probs = np.array([0.6, 0.3, 0.1])
    sharp, soft = calibrated(probs, 0.5), calibrated(probs, 2.0)
    assert np.isclose(sharp.sum(), 1) and np.isclose(soft.sum(), 1)
    assert list(np.argsort(sharp)) == list(np.argsort(probs)) == list(np.argsort(soft))
    assert sharp[0] > probs[0] > soft[0]
    assert np.allclose(calibrated(probs, 1.0), probs)


def test_fuse_weighs_the_calibrated_sides_and_falls_back_to_pixels() -> None:
    pixel, landmark = np.array([0.7, 0.3]), np.array([0.2, 0.8])
    even = FusionRule(landmark_weight=0.5)
    assert np.allclose(fuse(pixel, landmark, even), [0.45, 0.55])
    assert np.allclose(fuse(pixel, landmark, even.model_copy(update={"landmark_weight": 0})), pixel)
    assert np.allclose(fuse(pixel, None, even), pixel), "no landmarks: pixels alone"


def test_a_face_box_is_never_read_and_the_hand_beside_it_is(
    fused_model: Path, shared_dataset: Path
) -> None:
    recognizer = Recognizer.load(str(fused_model))
    assert recognizer.fused is not None and recognizer.source.landmarks is not None
    scene, face, hand = face_and_hand(shared_dataset)
    # The detector's boxes as it might give them at a desk: the face first, then the hand.
    boxes = hand_boxes((face, 0.9), (hand, 0.6))
    read = recognizer.fused.letters(scene, boxes, conf=0.0, max_det=10, per_hand=1)
    assert len(read) == 1, "only the hand is read"
    assert read[0].box.x1 == hand[0]
    assert read[0].landmarks is not None and len(read[0].landmarks) == 21


def test_a_hand_the_detector_missed_is_found_by_its_palm_and_the_face_is_not(
    fused: FusedReader, shared_dataset: Path
) -> None:
    assert fused.palms is not None
    scene, face, hand = face_beside_photo(shared_dataset)
    # The detector found only the face: it is refused, and the palm detector finds the hand.
    read = fused.letters(scene, hand_boxes((face, 0.9)), conf=0.0, max_det=10, per_hand=1)
    assert len(read) == 1, "one hand read, the face never"
    found = read[0]
    box = corners(found.box)
    assert iou(box, hand) > 0.6, "read on a box like the hand's label"
    assert iou(box, face) == 0
    assert found.landmarks is not None and len(found.landmarks) == 21
    assert box == pytest.approx(hand_box(found.landmarks)), "the box of its points"
    # The control: without the palm detector the same frame reads nothing.
    fused.palms = None
    assert fused.letters(scene, hand_boxes((face, 0.9)), conf=0.0, max_det=10, per_hand=1) == ()


def test_a_confirmed_hand_counts_by_its_presence_where_the_detector_is_unsure(
    fused: FusedReader, shared_dataset: Path
) -> None:
    scene, _, hand = face_and_hand(shared_dataset)
    found = fused.hand(scene, hand)
    probs = fused.probabilities(scene, hand, found)
    assert found.presence > 0.5
    for detector_score in (0.02, 0.99):
        read = fused.letters(scene, hand_boxes((hand, detector_score)), 0.0, 10, 1)
        p_hand = max(detector_score, found.presence)
        assert read[0].confidence == pytest.approx(p_hand * probs.max(), rel=1e-5)


def test_a_box_the_detector_is_unsure_of_is_read_only_where_no_sure_box_holds_a_hand(
    fused: FusedReader, shared_dataset: Path
) -> None:
    scene, face, hand = face_and_hand(shared_dataset)
    found = fused.hand(scene, hand)
    conf = found.presence * fused.probabilities(scene, hand, found).max() / 2
    assert conf > 0.02, "the hand reads a letter clearly enough for this test"
    # A sure face and an unsure hand: the face is refused, so the hand is read.
    read = fused.letters(scene, hand_boxes((face, 0.9), (hand, 0.01)), conf, 10, 1)
    assert [d.box.x1 for d in read] == [hand[0]]
    # A sure hand and an unsure one: the sure one is read, the other is not even checked.
    left = mirrored_hand_at_left(scene, hand)
    read = fused.letters(scene, hand_boxes((left, 0.9), (hand, 0.01)), conf, 10, 1)
    assert [d.box.x1 for d in read] == [left[0]]


def test_several_hands_are_each_read_on_their_own(fused: FusedReader, shared_dataset: Path) -> None:
    scene, _, hand = face_and_hand(shared_dataset)
    left = mirrored_hand_at_left(scene, hand)
    read = fused.letters(
        scene, hand_boxes((hand, 0.8), (left, 0.7)), conf=0.0, max_det=10, per_hand=1
    )
    assert sorted(d.box.x1 for d in read) == [left[0], hand[0]], "each hand is read once"
    assert read[0].letter == read[1].letter, "a hand and its mirror image read the same letter"


def test_a_fused_model_reads_each_hand_with_its_landmarks(
    fused_model: Path, shared_dataset: Path
) -> None:
    recognizer = Recognizer.load(str(fused_model))
    path = list_images(shared_dataset / "valid" / "images")[0]
    result = recognizer.recognize_path(path, conf=0.0, max_det=1)
    if result.top is not None:  # a model trained for two epochs may find no box
        assert result.top.landmarks is not None
    blank = np.zeros((240, 320, 3), np.uint8)
    assert recognizer.recognize(blank, conf=0.0).detections == (), "no hand, nothing read"


@pytest.mark.parametrize("missing", ["landmarks.onnx", "hand_landmarker.task"])
def test_a_model_folder_missing_a_landmark_file_names_it(
    fused_model: Path, tmp_path: Path, missing: str
) -> None:
    broken = shutil.copytree(fused_model, tmp_path / "model")
    (broken / missing).unlink()
    with pytest.raises(LandmarkError, match=f"{broken / missing} is missing"):
        Recognizer.load(str(broken))


def test_a_task_file_of_another_hash_is_refused(fused_model: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(fused_model, tmp_path / "model")
    meta = json.loads((broken / "metadata.json").read_text())
    assert meta["fusion"]["task_sha256"], "the folder records the task file's sha256"
    with (broken / "hand_landmarker.task").open("ab") as task:
        task.write(b"tampered")
    with pytest.raises(LandmarkError, match=f"{broken / 'hand_landmarker.task'} has sha256"):
        Recognizer.load(str(broken))
