"""Drawing boxes and captions on images: one look for previews, predictions and the app."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from tasks.core.records import Detection
from tasks.inference.landmarks import CONNECTIONS

GREEN = (0, 200, 0)
BONE, JOINT = (255, 255, 255), (0, 140, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX  # built into OpenCV: nothing to download


def draw_box(
    image: np.ndarray,
    corners: tuple[float, float, float, float],
    text: str,
    colour: tuple[int, int, int] = GREEN,
) -> np.ndarray:
    """Draw one box with a filled caption above it, in place; returns ``image``."""
    h, w = image.shape[:2]
    thickness = max(2, round(min(h, w) / 200))
    scale = max(0.5, min(h, w) / 600)
    x1, y1, x2, y2 = (round(float(v)) for v in corners)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    (text_w, text_h), base = cv2.getTextSize(text, FONT, scale, thickness)
    top = y1 - text_h - base - 4 if y1 - text_h - base - 4 >= 0 else y1
    cv2.rectangle(image, (x1, top), (x1 + text_w + 6, top + text_h + base + 4), colour, -1)
    cv2.putText(image, text, (x1 + 3, top + text_h + 2), FONT, scale, (0, 0, 0), thickness)
    return image


def draw_hand(image: np.ndarray, points: Iterable[tuple[float, float]]) -> np.ndarray:
    """Draw a hand's 21 landmarks and the bones between them, in place; returns ``image``."""
    joints = [(round(x), round(y)) for x, y in points]
    thickness = max(1, round(min(image.shape[:2]) / 300))
    for a, b in CONNECTIONS:
        cv2.line(image, joints[a], joints[b], BONE, thickness, cv2.LINE_AA)
    for joint in joints:
        cv2.circle(image, joint, thickness + 2, JOINT, -1, cv2.LINE_AA)
    return image


def draw_detections(
    image: np.ndarray, detections: Iterable[Detection], landmarks: bool = True
) -> np.ndarray:
    """A copy of ``image`` with each detection's box, letter and confidence drawn.

    Args:
        image: A BGR image.
        detections: What the recognizer found in it.
        landmarks: Also draw each hand's landmarks where the model read them, so a learner
            sees what was read.
    """
    out = image.copy()
    for det in detections:
        if landmarks and det.landmarks:
            draw_hand(out, det.landmarks)
        box = (det.box.x1, det.box.y1, det.box.x2, det.box.y2)
        draw_box(out, box, f"{det.letter} {det.confidence:.2f}")
    return out
