"""Drawing boxes and captions on images: one look for previews, predictions and the app."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from tasks.core.records import Detection

GREEN = (0, 200, 0)
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


def draw_detections(image: np.ndarray, detections: Iterable[Detection]) -> np.ndarray:
    """A copy of ``image`` with each detection's box, letter and confidence drawn."""
    out = image.copy()
    for det in detections:
        box = (det.box.x1, det.box.y1, det.box.x2, det.box.y2)
        draw_box(out, box, f"{det.letter} {det.confidence:.2f}")
    return out
