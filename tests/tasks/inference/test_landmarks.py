"""Hand landmarks: the bundle check, the reader on a real hand and a real face, the features."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.boxes import iou

from tasks.core.files import sha256_of
from tasks.data.yolo_format import label_path, list_images, read_boxes_xyxy
from tasks.inference.landmarks import (
    FEATURES,
    LABEL_HEIGHT,
    LABEL_WIDTH,
    PRESENCE,
    LandmarkError,
    LandmarkReader,
    features,
    frame_box,
    hand_box,
    read_task,
    square_patch,
)


@pytest.fixture(scope="module")
def reader(landmarker_task: Path) -> LandmarkReader:
    return LandmarkReader(landmarker_task)


def _valid_hands(dataset: Path, count: int) -> list[tuple[np.ndarray, tuple[float, ...], int]]:
    hands = []
    for path in list_images(dataset / "valid" / "images")[:count]:
        image = cv2.imread(str(path))
        boxes, classes = read_boxes_xyxy(label_path(path), image.shape[1], image.shape[0])
        hands.append((image, tuple(float(v) for v in boxes[0]), int(classes[0])))
    return hands


def test_read_task_names_the_file_when_missing_wrong_or_not_a_bundle(
    landmarker_task: Path, tmp_path: Path
) -> None:
    with pytest.raises(LandmarkError, match=r"nothing\.task is missing"):
        read_task(tmp_path / "nothing.task")
    with pytest.raises(LandmarkError, match=f"{landmarker_task} has sha256 .* not the 0+ its"):
        read_task(landmarker_task, sha256="0" * 64)
    junk = tmp_path / "junk.task"
    junk.write_bytes(b"not a zip")
    with pytest.raises(LandmarkError, match=f"{junk} is not a MediaPipe hand landmarker"):
        read_task(junk)
    other = tmp_path / "other.task"
    with zipfile.ZipFile(other, "w") as bundle:
        bundle.writestr("hand_detector.tflite", b"palm only")
    with pytest.raises(LandmarkError, match=f"{other} is not a MediaPipe"):
        read_task(other)
    assert read_task(landmarker_task, sha256_of(landmarker_task))[:8]


def test_a_hand_is_found_and_its_points_lie_in_its_box(
    reader: LandmarkReader, shared_dataset: Path
) -> None:
    for image, box, _ in _valid_hands(shared_dataset, 6):
        hand = reader.read(image, box)
        assert hand.presence > 0.5
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        inside = (
            (hand.points[:, 0] > x0 - 0.2 * side)
            & (hand.points[:, 0] < x1 + 0.2 * side)
            & (hand.points[:, 1] > y0 - 0.2 * side)
            & (hand.points[:, 1] < y1 + 0.2 * side)
        )
        assert inside.mean() > 0.9, "landmarks map back to frame pixels"


def test_a_real_face_is_not_a_hand(reader: LandmarkReader) -> None:
    """scikit-image's astronaut (a public-domain NASA portrait): her face reads no hand."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = (160.0, 20.0, 290.0, 180.0)  # x0, y0, x1, y1 around her face
    upright = reader.read(image, face, turn_below=0.0)
    assert upright.presence < PRESENCE
    patch = square_patch(image, face)[0]
    turned = [reader.run_patch(np.rot90(patch, turns))[1] for turns in (1, 2, 3)]
    assert max(turned) < PRESENCE, "nor turned any way"
    assert max(turned) > upright.presence, "the case below: a turned reading scores higher"
    assert reader.read(image, face).presence == upright.presence, "but is not sure: not kept"


def test_a_turned_reading_maps_back_to_the_frame(
    reader: LandmarkReader, shared_dataset: Path
) -> None:
    """A hand in a frame turned a quarter is read turned back: the same points, turned."""
    image, (x0, y0, x1, y1), _ = _valid_hands(shared_dataset, 2)[1]
    height = image.shape[0]
    upright = reader.read(image, (x0, y0, x1, y1))
    clockwise = np.ascontiguousarray(np.rot90(image, -1))  # (x, y) -> (height - y, x)
    box = (height - y1, x0, height - y0, x1)
    expected = np.stack([height - upright.points[:, 1], upright.points[:, 0]], axis=1)
    turned = reader.read(clockwise, box, turn_below=1.1)  # read all four ways
    assert turned.presence > 0.9
    assert np.abs(turned.points[:, :2] - expected).mean() < 3, "the upright reading, turned"
    plain = reader.read(clockwise, box, turn_below=0.0)
    assert np.abs(plain.points[:, :2] - expected).mean() > 5, "read sideways, it differs"


def test_a_sideways_hand_missed_upright_is_found_turned(
    reader: LandmarkReader, shared_dataset: Path
) -> None:
    """G, H, P and Q point sideways or down; some read no hand upright, every way turned."""
    missed = []
    for path in list_images(shared_dataset / "train" / "images"):
        if path.name[0] not in "GHPQ":
            continue
        image = cv2.imread(str(path))
        boxes, _ = read_boxes_xyxy(label_path(path), image.shape[1], image.shape[0])
        box = tuple(float(v) for v in boxes[0])
        if reader.read(image, box, turn_below=0.0).presence < PRESENCE:
            missed.append((image, box))
        if len(missed) == 3:
            break
    assert len(missed) == 3, "the dataset's train split holds such hands"
    for image, box in missed:
        hand = reader.read(image, box)
        assert hand.presence > 0.5
        x0, y0, x1, y1 = box
        pad = 0.2 * max(x1 - x0, y1 - y0)
        assert (hand.points[:, 0] > x0 - pad).all() and (hand.points[:, 0] < x1 + pad).all()
        assert (hand.points[:, 1] > y0 - pad).all() and (hand.points[:, 1] < y1 + pad).all()


def test_a_mirrored_hand_gives_the_same_features(
    reader: LandmarkReader, shared_dataset: Path
) -> None:
    """A left hand fingerspells the mirror image of a right one: both read alike."""
    for image, box, _ in _valid_hands(shared_dataset, 5):
        width = image.shape[1]
        mirrored_box = (width - box[2], box[1], width - box[0], box[3])
        hand, mirrored = reader.read(image, box), reader.read(cv2.flip(image, 1), mirrored_box)
        assert (hand.right > 0.5) != (mirrored.right > 0.5), "handedness flips with the image"
        a, b = features(hand.points, hand.right), features(mirrored.points, mirrored.right)
        assert np.abs(a - b).mean() < 0.05


def test_features_ignore_where_and_how_big_the_hand_is() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (21, 3)).astype(np.float32)
    moved = points * 3.5 + np.array([40, -20, 0], np.float32)
    a, b = features(points, 0.9), features(moved, 0.9)
    assert a.shape == (FEATURES,) and np.allclose(a, b, atol=1e-5)
    assert np.allclose(a.reshape(21, 3)[0], 0), "the wrist is the origin"
    assert np.isclose(np.linalg.norm(a.reshape(21, 3)[:, :2], axis=1).max(), 1.0)
    left = features(points, 0.1).reshape(21, 3)
    assert np.allclose(left[:, 0], -a.reshape(21, 3)[:, 0], atol=1e-6), "a left hand is mirrored"


def test_a_box_at_the_border_is_padded_not_squashed() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    patch, left, top, side = square_patch(image, (150.0, 0.0, 200.0, 50.0), pad=0.2)
    assert patch.shape == (224, 224, 3)
    assert (left, top, side) == (145.0, -5.0, 60.0)
    assert patch[-1, -1].tolist() == [0, 0, 0], "outside the frame is black"
    assert patch[112, 112].tolist() == [255, 255, 255]


def test_the_box_of_a_hand_s_points_has_a_label_s_proportions() -> None:
    points = np.array([[200 + 3 * i, 100 + 4 * i, 0.5] for i in range(21)], np.float32)
    x0, y0, x1, y1 = hand_box(points)  # the points span 60 × 80 around (230, 140)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((230, 140))
    assert (x1 - x0, y1 - y0) == pytest.approx((LABEL_WIDTH * 80, LABEL_HEIGHT * 80))
    assert hand_box(points[:, :2]) == hand_box(points), "(x, y) points as well as (x, y, z)"


def test_a_dataset_hand_s_points_give_a_box_like_its_label(
    reader: LandmarkReader, shared_dataset: Path
) -> None:
    overlaps = []
    for image, box, _ in _valid_hands(shared_dataset, 8):
        found = reader.read(image, box)
        if found.presence > PRESENCE:
            overlaps.append(iou(hand_box(found.points), box))
    assert len(overlaps) >= 6 and np.median(overlaps) > 0.7, overlaps


def test_a_box_of_points_is_kept_inside_the_frame() -> None:
    inside = frame_box((-5.0, 10.0, 700.0, 500.0), (480, 640, 3))
    assert (inside.x1, inside.y1, inside.x2, inside.y2) == (0.0, 10.0, 640.0, 480.0)
    unbounded = frame_box((-5.0, 10.0, 700.0, 500.0), None)
    assert (unbounded.x1, unbounded.x2, unbounded.y2) == (0.0, 700.0, 500.0), "no right/bottom"
