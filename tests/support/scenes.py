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


def face_beside_photo(dataset: Path) -> tuple[np.ndarray, Corners, Corners]:
    """A 640×480 frame: the astronaut's face at the left, a whole dataset photo at the right.

    Unlike :func:`face_and_hand`'s pasted box, the photo keeps the hand's arm and background,
    as MediaPipe's palm detector expects of a real frame.

    Returns:
        The frame, the face's box and the photo's hand label box, in frame pixels.
    """
    from skimage import data

    scene = np.full((480, 640, 3), 90, np.uint8)
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    scene[80:320, 10:234] = cv2.resize(astronaut[0:300, 110:390], (224, 240))
    path = list_images(dataset / "valid" / "images")[1]
    photo = cv2.imread(str(path))
    side, left, top = 380, 250, 50
    scale = side / photo.shape[0]
    scene[top : top + side, left : left + side] = cv2.resize(photo, (side, side))
    boxes, _ = read_boxes_xyxy(label_path(path), photo.shape[1], photo.shape[0])
    x0, y0, x1, y1 = (float(v) * scale for v in boxes[0])
    return scene, (50.0, 80.0, 200.0, 265.0), (left + x0, top + y0, left + x1, top + y1)
