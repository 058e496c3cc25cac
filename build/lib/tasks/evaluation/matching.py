"""Detection mAP computed from the shared recognizer's own detections.

The 26-class detector is scored by ultralytics' validator, but a two-stage model (hand
detector + crop classifier) is not one network the validator can run. This module scores any
model the recognizer loads: it matches each image's detections to its labelled boxes at the
COCO IoU thresholds with the validator's own IoU and matching, and hands the matches to
ultralytics' ``ap_per_class``, so AP, precision and recall mean what they mean for the validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

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


def match(
    pred_boxes: np.ndarray,
    pred_cls: np.ndarray,
    pred_conf: np.ndarray,
    true_boxes: np.ndarray,
    true_cls: np.ndarray,
) -> np.ndarray:
    """(N, 10) true-positive flags at the COCO IoU thresholds, as ultralytics' validator sets
    them: its own IoU (``box_iou``) and its own matching (``match_predictions``: predictions in
    order of decreasing confidence, each claiming the best labelled box of its class that is
    still free at each threshold).
    """
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import box_iou

    correct = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), bool)
    if len(pred_boxes) == 0 or len(true_boxes) == 0:
        return correct
    order = np.argsort(-np.asarray(pred_conf), kind="stable")
    iou = box_iou(
        torch.as_tensor(true_boxes, dtype=torch.float32),
        torch.as_tensor(pred_boxes[order], dtype=torch.float32),
    )
    # The method reads only ``self.iouv``; a validator instance would create a run folder.
    thresholds = SimpleNamespace(iouv=torch.as_tensor(IOU_THRESHOLDS, dtype=torch.float32))
    flags = BaseValidator.match_predictions(
        thresholds,  # type: ignore[arg-type]
        torch.as_tensor(pred_cls[order]),
        torch.as_tensor(true_cls),
        iou,
    )
    correct[order] = flags.numpy()
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
        scores = np.asarray([d.confidence for d in found], np.float32)
        flags.append(match(boxes.reshape(-1, 4), classes, scores, true_boxes, true_cls))
        confidences.append(scores)
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
