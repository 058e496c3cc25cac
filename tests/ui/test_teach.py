"""Teach mode's logic: one-hand frames, bursts spread over their duration, letters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from support.boxes import corners

from tasks.core.records import LETTERS, Box, Detection
from tasks.inference.landmarks import LABEL_HEIGHT, hand_box
from ui.teach import (
    BurstCollector,
    TeachTap,
    burst_counts,
    letter_order,
    one_hand,
    shot_preview,
    slot_of,
)


def det(letter: str = "A", box: tuple[float, ...] = (10, 20, 110, 140), conf: float = 0.9):
    return Detection(letter=letter, class_id=LETTERS.index(letter), confidence=conf,
                     box=Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3]))  # fmt: skip


def frame(value: int = 0) -> np.ndarray:
    return np.full((120, 160, 3), value, np.uint8)


def test_one_hand_needs_exactly_one_box():
    assert one_hand([]) is None
    assert one_hand([det()]) == det().box
    assert one_hand([det(), det("B", (200, 20, 300, 140))]) is None, "two hands"
    assert one_hand([det("A"), det("S")]) == det().box, "one hand read as two letters"


@pytest.mark.parametrize(
    ("elapsed", "slot"), [(0.0, 0), (0.24, 0), (0.25, 1), (1.99, 7), (2.0, None), (-0.1, None)]
)
def test_slots_divide_the_burst_evenly(elapsed: float, slot: int | None):
    assert slot_of(elapsed, 2.0, 8) == slot


def test_a_burst_starts_at_the_first_hand_and_keeps_one_frame_per_slot():
    collector = BurstCollector(frames=4, seconds=2.0)
    assert not collector.offer(frame(), [det()], 0.0), "not armed: nothing kept"
    collector.arm("A")
    assert not collector.offer(frame(), [], 1.0), "no hand yet: the clock has not started"
    assert collector.view().state == "waiting"
    kept = []
    t = 5.0
    while collector.view().state != "done":  # 30 fps from t = 5 s
        hands = [] if 5.45 < t < 5.9 else [det()]  # the hand leaves for a moment
        if 5.95 < t < 6.2:
            hands = [det(), det("B", (200, 0, 300, 100))]  # a second hand appears
        if collector.offer(frame(int(t * 10) % 255), hands, t):
            kept.append(round(t - 5.0, 3))
        t += 1 / 30
    shots = collector.shots()
    assert len(shots) == len(kept) == 4
    assert [round(s.at, 3) for s in shots] == kept
    assert kept[0] == 0.0 and all(0.5 * i <= at < 0.5 * (i + 1) for i, at in enumerate(kept))
    assert kept[1] >= 0.9, "slot 1 skipped the frames without a hand"
    assert kept[2] >= 1.2 - 1e-9, "and slot 2 those with two hands"
    assert all(s.box == det().box for s in shots)
    assert collector.view().progress == 1.0


def test_a_burst_ends_when_its_time_is_up_even_with_empty_slots():
    collector = BurstCollector(frames=8, seconds=1.0)
    collector.arm("B")
    collector.offer(frame(), [det()], 10.0)
    collector.offer(frame(), [], 10.5)
    assert collector.view().state == "capturing" and collector.view().progress == 0.5
    collector.offer(frame(), [det()], 11.0)  # past the end: not kept, the burst is done
    view = collector.view()
    assert (view.state, view.letter, view.kept) == ("done", "B", 1)


def test_shots_can_be_deleted_and_the_burst_cleared():
    collector = BurstCollector(frames=3, seconds=0.3)
    collector.arm("C")
    for i in range(3):
        collector.offer(frame(i), [det()], i * 0.1)
    assert [int(s.image[0, 0, 0]) for s in collector.shots()] == [0, 1, 2]
    collector.remove(1)
    collector.remove(7)  # out of range: ignored
    assert [int(s.image[0, 0, 0]) for s in collector.shots()] == [0, 2]
    collector.clear()
    assert collector.shots() == () and collector.view().state == "idle"


def test_kept_frames_are_copies():
    collector = BurstCollector(frames=1, seconds=1.0)
    collector.arm("A")
    image = frame(7)
    collector.offer(image, [det()], 0.0)
    image[:] = 0
    assert collector.shots()[0].image[0, 0, 0] == 7


def test_configure_rejects_an_empty_burst():
    with pytest.raises(ValueError, match="frames >= 1"):
        BurstCollector().configure(0, 2.0)


def test_letter_order_is_a_to_z_or_the_most_missed_first():
    assert letter_order() == tuple(LETTERS)
    assert letter_order(LETTERS, {}) == tuple(LETTERS)
    assert letter_order(LETTERS, {"R": 1, "M": 3, "N": 3, "A": 0}) == ("M", "N", "R")


def test_the_tap_recognizes_as_before_and_feeds_the_collector():
    collector = BurstCollector(frames=2, seconds=1.0)
    collector.arm("A")
    result = SimpleNamespace(detections=(det(),))
    inner = SimpleNamespace(recognize=lambda image, **kw: result, names=LETTERS)
    clock = iter([0.0, 0.6])
    tap = TeachTap(inner, collector, clock=lambda: next(clock))
    assert tap.recognize(frame(), conf=0.2) is result
    assert tap.recognize(frame(), conf=0.2) is result
    assert tap.names == LETTERS, "everything else is the recognizer's"
    assert collector.view().state == "done" and len(collector.shots()) == 2


def test_preview_draws_the_box_on_an_rgb_copy():
    shot = BurstCollector(1, 1.0)
    shot.arm("A")
    shot.offer(frame(), [det()], 0.0)
    picture = shot_preview(shot.shots()[0])
    assert picture.shape == (120, 160, 3) and picture.any()
    assert not shot.shots()[0].image.any(), "the saved frame stays clean"


def test_burst_counts():
    assert burst_counts(["A", "B", "A"]) == {"A": 2, "B": 1}


def test_a_face_in_view_is_never_captured_the_hand_is(fused_model, shared_dataset):
    """At a desk the detector may take the face for a hand: with a fused model the face
    neither blocks a burst (two "hands") nor becomes a training label."""
    from support.scenes import face_and_hand, hand_boxes

    from tasks.inference.recognizer import Recognizer

    recognizer = Recognizer.load(str(fused_model))
    scene, face, hand = face_and_hand(shared_dataset)
    read = recognizer.fused.letters(scene, hand_boxes((face, 0.9), (hand, 0.6)), 0.0, 10, 1)
    collector = BurstCollector(frames=2, seconds=1.0)
    collector.arm("A")
    assert collector.offer(scene, read, now=0.0)
    assert collector.offer(scene, read, now=0.6)
    shots = collector.shots()
    assert len(shots) == 2
    for shot in shots:  # the box of the hand's points, on the hand, nowhere near the face
        assert corners(shot.box) == pytest.approx(hand_box(read[0].landmarks))
        assert shot.box.x1 >= face[2] and shot.box.y1 >= face[3] - 10
        assert shot.box.x1 < hand[2] and shot.box.y1 < hand[3]


def test_one_hand_read_with_landmarks_gets_the_box_of_its_points():
    points = tuple((100.0 + 2 * i, 50.0 + 5 * i) for i in range(21))  # 40 wide, 100 tall
    hand = det().model_copy(update={"landmarks": points})
    box = one_hand([hand], (480, 640, 3))
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(hand_box(points))
    assert box.y2 - box.y1 == pytest.approx(LABEL_HEIGHT * 100)
    near_edge = det().model_copy(update={"landmarks": tuple((x - 95, y) for x, y in points)})
    assert one_hand([near_edge], (480, 640, 3)).x1 == 0, "kept inside the frame"
