"""Test scenes: a real face (scikit-image's public-domain astronaut) beside a dataset hand."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tasks.core.records import Box, Detection
from tasks.data.yolo_format import label_path, list_images, read_boxes_xyxy

Corners = tuple[float, float, float, float]


def face_and_hand(dataset: Path) -> tuple[np.ndarray, Corners, Corners]:
    """The astronaut's face (public domain) with a dataset hand pasted beside it."""
    from skimage import data

    scene = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR).copy()
    path = list_images(dataset / "valid" / "images")[0]
    photo = cv2.imread(str(path))
    boxes, _ = read_boxes_xyxy(label_path(path), photo.shape[1], photo.shape[0])
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    hand = cv2.resize(photo[y0:y1, x0:x1], (150, int(150 * (y1 - y0) / (x1 - x0))))
    h, w = hand.shape[:2]
    scene[300 : 300 + h, 340 : 340 + w] = hand[: 512 - 300, : 512 - 340]
    return scene, (160.0, 20.0, 290.0, 180.0), (340.0, 300.0, 340.0 + w, 300.0 + min(h, 212))


def hand_boxes(*boxes: tuple[Corners, float]) -> tuple[Detection, ...]:
    """One-class detections ("hand") as the detector gives them: corners and confidence."""
    return tuple(
        Detection(
            letter="hand",
            class_id=0,
            confidence=conf,
            box=Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
        )
        for box, conf in boxes
    )
