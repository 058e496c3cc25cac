"""Drawing boxes and captions: in place for one box, on a copy for detections."""

from __future__ import annotations

import numpy as np

from tasks.core.records import Box, Detection
from tasks.inference.draw import GREEN, draw_box, draw_detections


def test_draw_box_draws_in_place_with_a_caption_above():
    image = np.zeros((200, 200, 3), np.uint8)
    out = draw_box(image, (50, 80, 150, 180), "A 0.90")
    assert out is image
    assert tuple(image[130, 50]) == GREEN  # the box's left edge
    assert (image[60:78, 52:80] != 0).any()  # the filled caption sits above the box
    assert (image[100:160, 70:130] == 0).all()  # the box is not filled


def test_a_box_at_the_top_keeps_its_caption_inside_the_image():
    image = np.zeros((100, 100, 3), np.uint8)
    draw_box(image, (10, 0, 60, 50), "B")
    assert (image[2:10, 12:20] != 0).any()


def test_draw_detections_leaves_the_input_alone():
    image = np.zeros((120, 160, 3), np.uint8)
    detection = Detection(
        letter="C", class_id=2, confidence=0.5, box=Box(x1=10, y1=40, x2=90, y2=110)
    )
    out = draw_detections(image, [detection])
    assert not image.any() and out.any() and out.shape == image.shape
    assert np.array_equal(draw_detections(image, []), image)
