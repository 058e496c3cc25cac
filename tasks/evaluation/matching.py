"""Detection mAP computed from the shared recognizer's own detections.

The 26-class detector is scored by ultralytics' validator, but a two-stage model (hand
detector + crop classifier) is not one network the validator can run. This module scores any
model the recognizer loads: it matches each image's detections to its labelled boxes at the
COCO IoU thresholds and hands the matches to ultralytics' ``ap_per_class``, so AP, precision
and recall mean exactly what they mean for the validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.core.records import LETTERS
from tasks.data.yolo_format import label_path, read_boxes_xyxy

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


@dataclass(frozen=True)
class BoxMetrics:
    """The fields of ultralytics' ``Metric`` (``metrics.box``) that the evaluation reads."""

    map50: float
    map: float
    mp: float
    mr: float
    ap50: np.ndarray  # per class in ap_class_index
    ap: np.ndarray  # mAP50-95 per class in ap_class_index
    ap_class_index: np.ndarray


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clip(0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match(
    pred_boxes: np.ndarray, pred_cls: np.ndarray, true_boxes: np.ndarray, true_cls: np.ndarray
) -> np.ndarray:
    """(N, 10) true-positive flags: each labelled box is claimed by at most one prediction.

    At each IoU threshold, same-class pairs above it are taken in order of decreasing IoU,
    and a prediction or a labelled box already taken is skipped.
    """
    correct = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), bool)
    if len(pred_boxes) == 0 or len(true_boxes) == 0:
        return correct
    iou = iou_matrix(true_boxes, pred_boxes) * (true_cls[:, None] == pred_cls[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        truth, pred = np.nonzero(iou >= threshold)
        order = np.argsort(-iou[truth, pred], kind="stable")
        taken_truth: set[int] = set()
        taken_pred: set[int] = set()
        for i in order.tolist():
            if truth[i] in taken_truth or pred[i] in taken_pred:
                continue
            taken_truth.add(int(truth[i]))
            taken_pred.add(int(pred[i]))
            correct[pred[i], t] = True
    return correct


def recognizer_metrics(
    recognizer, images: list[Path], conf: float = 0.001, max_det: int = 10
) -> tuple[BoxMetrics, np.ndarray, list[tuple[int, float, tuple[float, ...]] | None]]:
    """Detection metrics, per-class box counts and each image's top detection.

    Args:
        recognizer: A loaded :class:`tasks.inference.recognizer.Recognizer`.
        images: Image files with YOLO labels in the sibling ``labels`` folder.
        conf: Lowest confidence kept (low, as for any mAP).
        max_det: Detections kept per image.

    Returns:
        The metrics, labelled boxes per letter, and per image ``(class_id, confidence, box)``
        of its most confident detection, or ``None`` when it has none.

    Raises:
        ValueError: When an image cannot be read or a label line is malformed.
    """
    from ultralytics.utils.metrics import ap_per_class

    flags, confidences, predicted, targets = [], [], [], []
    tops: list[tuple[int, float, tuple[float, ...]] | None] = []
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read {path} as an image")
        true_boxes, true_cls = read_boxes_xyxy(label_path(path), image.shape[1], image.shape[0])
        found = recognizer.recognize(image, conf=conf, max_det=max_det).detections
        boxes = np.asarray([(d.box.x1, d.box.y1, d.box.x2, d.box.y2) for d in found], np.float32)
        classes = np.asarray([d.class_id for d in found], np.int64)
        flags.append(match(boxes.reshape(-1, 4), classes, true_boxes, true_cls))
        confidences.append(np.asarray([d.confidence for d in found], np.float32))
        predicted.append(classes)
        targets.append(true_cls)
        top = found[0] if found else None
        tops.append(None if top is None else (top.class_id, top.confidence, tuple(boxes[0])))
    target_cls = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    counts = np.bincount(target_cls, minlength=len(LETTERS))
    stats = ap_per_class(
        np.concatenate(flags),
        np.concatenate(confidences),
        np.concatenate(predicted),
        target_cls,
    )
    precision, recall, ap, classes = stats[2], stats[3], stats[5], stats[6]
    empty = not len(classes)
    metrics = BoxMetrics(
        map50=0.0 if empty else float(ap[:, 0].mean()),
        map=0.0 if empty else float(ap.mean()),
        mp=0.0 if empty else float(precision.mean()),
        mr=0.0 if empty else float(recall.mean()),
        ap50=ap[:, 0] if not empty else np.zeros(0),
        ap=ap.mean(1) if not empty else np.zeros(0),
        ap_class_index=classes,
    )
    return metrics, counts, tops
