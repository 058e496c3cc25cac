"""YOLO input and output in numpy/cv2: letterbox a frame, decode the head, NMS, map boxes back.

Kept apart from :mod:`tasks.inference.recognizer` so the quantizer's calibration and the
recognizer share one preprocessing, and the recognizer module holds only model loading and
composition.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tasks.core.records import Box, Detection

PAD_VALUE = 114  # ultralytics pads with grey 114; the model was trained on that


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image of ``shape`` (h, w) was placed on the model's input canvas."""

    shape: tuple[int, int]
    gain: tuple[float, float]  # (x, y): each side is rounded separately, as ultralytics does
    pad: tuple[int, int]  # (left, top)


def letterbox(
    image: np.ndarray, size: tuple[int, int], canvas: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` keeping its aspect ratio and centre it on a grey canvas of ``size`` (h, w).

    Args:
        image: BGR uint8 image, H x W x 3.
        size: Canvas (height, width).
        canvas: Optional uint8 buffer of that size to draw into (saves an allocation per frame).

    Returns:
        The canvas and the placement needed to map boxes back.
    """
    h, w = image.shape[:2]
    out_h, out_w = size
    ratio = min(out_h / h, out_w / w)
    new_w, new_h = max(round(w * ratio), 1), max(round(h * ratio), 1)
    left, top = round((out_w - new_w) / 2 - 0.1), round((out_h - new_h) / 2 - 0.1)
    if canvas is None:
        canvas = np.empty((out_h, out_w, 3), np.uint8)
    canvas.fill(PAD_VALUE)
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h))
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Letterbox((h, w), (new_w / w, new_h / h), (left, top))


def preprocess(
    image: np.ndarray,
    size: tuple[int, int],
    canvas: np.ndarray | None = None,
    tensor: np.ndarray | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """Turn a BGR frame into the model input: letterboxed, RGB, NCHW float32 in [0, 1].

    Args:
        image: BGR uint8 image, H x W x 3.
        size: Model input (height, width).
        canvas: Optional (h, w, 3) uint8 buffer for the letterbox.
        tensor: Optional (1, 3, h, w) float32 buffer for the result.

    Returns:
        The input tensor and the placement needed to map boxes back.

    Raises:
        ValueError: When ``image`` is not a BGR uint8 image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 H x W x 3 image, got {image.shape} {image.dtype}")
    canvas, placement = letterbox(image, size, canvas)
    if tensor is None:
        tensor = np.empty((1, 3, *size), np.float32)
    # BGR->RGB, HWC->CHW and /255 straight into the tensor; splitting the planes first beats
    # one strided numpy pass by a third.
    for plane, channel in zip(cv2.split(canvas)[::-1], tensor[0], strict=True):
        np.multiply(plane, np.float32(1 / 255), out=channel)
    return tensor, placement


def unletterbox(boxes: np.ndarray, placement: Letterbox) -> np.ndarray:
    """Map (N, 4) xyxy boxes on the canvas back to the original image, clipped to its borders.

    Args:
        boxes: Boxes in canvas pixels.
        placement: What :func:`letterbox` returned for the image.

    Returns:
        A new float32 (N, 4) array in image pixels.
    """
    (gain_x, gain_y), (left, top) = placement.gain, placement.pad
    h, w = placement.shape
    shifted = (boxes - np.array([left, top, left, top], np.float32)) / np.array(
        [gain_x, gain_y, gain_x, gain_y], np.float32
    )
    return shifted.clip(0, np.array([w, h, w, h], np.float32)).astype(np.float32, copy=False)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        iou: A box is dropped when its IoU with a better kept box is above this (as torchvision).
        max_det: Stop after keeping this many.

    Returns:
        Indices of the kept boxes, best first.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter_w = (np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])).clip(0)
        inter_h = (np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])).clip(0)
        inter = inter_w * inter_h
        order = rest[inter / (areas[best] + areas[rest] - inter + 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode(
    output: np.ndarray,
    placement: Letterbox,
    names: tuple[str, ...],
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 10,
    agnostic: bool = False,
) -> tuple[Detection, ...]:
    """Turn a YOLO11 head output (1, 4 + nc, N) of cx, cy, w, h and class scores into detections.

    There is no objectness: a candidate's confidence is its best class score. NMS is per class
    unless ``agnostic`` (one hand shows one letter, so agnostic suits live video).

    Args:
        output: The raw head output, in canvas pixels.
        placement: How the frame was letterboxed onto the canvas.
        names: Class names, index = class id.
        conf: Keep candidates scoring strictly above this.
        iou: NMS overlap above which the weaker box is dropped.
        max_det: Most detections returned.
        agnostic: One NMS across all classes.

    Returns:
        Detections in frame pixels, best first.
    """
    pred = output[0]
    class_scores = pred[4:]
    # max over the class axis is ~15x faster than argmax there; argmax only the few survivors.
    candidates = np.flatnonzero(class_scores.max(0) > conf)
    if candidates.size == 0:
        return ()
    survivors = class_scores[:, candidates]
    class_ids = survivors.argmax(0)
    scores = survivors[class_ids, np.arange(candidates.size)]
    cx, cy, bw, bh = pred[:4, candidates]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    # Shifting each class to its own far-away region makes one NMS pass class-aware.
    offset = 0.0 if agnostic else class_ids[:, None] * 8192.0
    kept = nms(boxes + offset, scores, iou, max_det)
    mapped = unletterbox(boxes[kept], placement).tolist()
    return tuple(
        Detection(
            letter=names[cid],
            class_id=cid,
            confidence=score,
            box=Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3]),
        )
        for cid, score, b in zip(
            class_ids[kept].tolist(), scores[kept].tolist(), mapped, strict=True
        )
    )
