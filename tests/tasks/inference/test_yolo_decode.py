"""YOLO pre- and post-processing in numpy: letterbox, tensor, NMS, decode and the way back."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.inference.yolo_decode import (
    PAD_VALUE,
    Letterbox,
    decode,
    letterbox,
    nms,
    preprocess,
    unletterbox,
)

NAMES = ("A", "B", "C")


def test_letterbox_centres_a_wide_image_on_grey():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, placement = letterbox(image, (320, 320))
    assert canvas.shape == (320, 320, 3)
    assert placement == Letterbox(shape=(100, 200), gain=(1.6, 1.6), pad=(0, 80))
    assert (canvas[:80] == PAD_VALUE).all() and (canvas[240:] == PAD_VALUE).all()
    assert (canvas[80:240] == 7).all()


def test_letterbox_reuses_a_canvas_and_keeps_an_image_of_the_right_size():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = np.zeros((64, 64, 3), np.uint8)
    canvas, placement = letterbox(image, (64, 64), buffer)
    assert canvas is buffer and np.array_equal(canvas, image)
    assert placement.gain == (1.0, 1.0) and placement.pad == (0, 0)


def test_preprocess_is_rgb_nchw_in_unit_range():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    tensor, _ = preprocess(image, (32, 32))
    assert tensor.shape == (1, 3, 32, 32) and tensor.dtype == np.float32
    assert tensor[0, 2].min() == 1.0 and tensor[0, :2].max() == 0.0  # blue is the last plane
    out = np.empty((1, 3, 32, 32), np.float32)
    assert preprocess(image, (32, 32), tensor=out)[0] is out


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_preprocess_rejects_what_is_not_bgr_uint8(bad: np.ndarray):
    with pytest.raises(ValueError, match="BGR uint8"):
        preprocess(bad, (32, 32))


def test_unletterbox_inverts_the_placement_and_clips():
    placement = Letterbox(shape=(100, 200), gain=(1.6, 1.6), pad=(0, 80))
    canvas_boxes = np.array([[16, 96, 160, 160], [-10, 60, 400, 300]], np.float32)
    mapped = unletterbox(canvas_boxes, placement)
    np.testing.assert_allclose(mapped[0], [10, 10, 100, 50])
    np.testing.assert_allclose(mapped[1], [0, 0, 200, 100])  # clipped to the image
    assert mapped.dtype == np.float32


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32
    )
    scores = np.array([0.6, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, iou=0.45, max_det=10).tolist() == [1, 2]
    assert nms(boxes, scores, iou=0.99, max_det=10).tolist() == [1, 3, 0, 2]
    assert nms(boxes, scores, iou=0.45, max_det=1).tolist() == [1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, 5).size == 0


def test_nms_agrees_with_torchvision():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 100, (200, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (200, 2))], axis=1)
    boxes = boxes.astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    expected = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    assert nms(boxes, scores, 0.5, max_det=1000).tolist() == expected.tolist()


def _head(candidates: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """A (1, 4 + nc, N) head output: each candidate is cx, cy, w, h, class, score."""
    output = np.zeros((1, 4 + len(NAMES), len(candidates)), np.float32)
    for index, (cx, cy, w, h, cls, score) in enumerate(candidates):
        output[0, :4, index] = cx, cy, w, h
        output[0, 4 + cls, index] = score
    return output


IDENTITY = Letterbox(shape=(100, 100), gain=(1.0, 1.0), pad=(0, 0))


def test_decode_returns_detections_best_first_in_frame_pixels():
    output = _head([(50, 50, 20, 20, 1, 0.8), (20, 20, 10, 10, 2, 0.9), (80, 80, 4, 4, 0, 0.1)])
    detections = decode(output, IDENTITY, NAMES, conf=0.25)
    assert [(d.letter, d.class_id) for d in detections] == [("C", 2), ("B", 1)]
    assert detections[0].confidence == pytest.approx(0.9)
    box = detections[1].box
    assert (box.x1, box.y1, box.x2, box.y2) == (40, 40, 60, 60)


def test_decode_with_nothing_above_conf_is_empty():
    assert decode(_head([(50, 50, 20, 20, 0, 0.2)]), IDENTITY, NAMES, conf=0.25) == ()
    # strictly above: a score equal to conf is dropped
    assert decode(_head([(50, 50, 20, 20, 0, 0.25)]), IDENTITY, NAMES, conf=0.25) == ()


def test_nms_is_per_class_unless_agnostic():
    same_place = _head([(50, 50, 20, 20, 0, 0.9), (50, 50, 20, 20, 1, 0.8)])
    assert [d.letter for d in decode(same_place, IDENTITY, NAMES)] == ["A", "B"]
    assert [d.letter for d in decode(same_place, IDENTITY, NAMES, agnostic=True)] == ["A"]


def test_decode_maps_back_through_the_letterbox():
    image = np.zeros((100, 200, 3), np.uint8)
    _, placement = letterbox(image, (320, 320))
    output = _head([(88, 128, 144, 64, 0, 0.9)])  # canvas box 16..160 x 96..160
    (detection,) = decode(output, placement, NAMES)
    box = detection.box
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((10, 10, 100, 50))


def test_max_det_caps_the_detections():
    output = _head([(10 + 20 * i, 50, 10, 10, 0, 0.5 + i / 100) for i in range(5)])
    assert len(decode(output, IDENTITY, NAMES, max_det=2)) == 2
