"""mAP from the recognizer's detections: matching, and the scores of perfect and wrong answers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core.records import Box, Detection
from tasks.data.yolo_format import label_path, read_boxes_xyxy
from tasks.evaluation.matching import match, recognizer_metrics
from tasks.inference.recognizer import Recognition


def test_match_respects_class_threshold_and_one_claim_per_box():
    truth = np.array([[0, 0, 10, 10]], np.float32)
    preds = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 10, 10]], np.float32)
    flags = match(preds, np.array([3, 3, 4]), np.array([0.9, 0.8, 0.7]), truth, np.array([3]))
    assert flags[0].all(), "exact box, right class: a hit at every IoU threshold"
    assert not flags[1].any(), "the labelled box is already claimed"
    assert not flags[2].any(), "wrong class never matches"
    shifted = np.array([[2, 0, 12, 10]], np.float32)  # IoU 8/12 = 0.667
    hits = match(shifted, np.array([3]), np.array([0.5]), truth, np.array([3]))[0]
    assert hits.tolist() == [True, True, True, True, False, False, False, False, False, False]


def test_the_more_confident_prediction_claims_first_as_in_the_validator():
    """A confident loose box and a less confident tight one on one hand: the confident one
    claims it where it can (IoU 0.6 and below), the tight one at the stricter thresholds; the
    order of the arrays does not matter."""
    truth = np.array([[0, 0, 10, 10]], np.float32)
    tight, loose = [0, 0, 10, 9.5], [0, 0, 10, 6]  # IoU 0.95 and 0.6
    flags = match(
        np.array([tight, loose], np.float32), np.array([3, 3]), np.array([0.4, 0.9]),
        truth, np.array([3]),
    )  # fmt: skip
    assert flags[1].tolist() == [True] * 3 + [False] * 7
    assert flags[0].tolist() == [False] * 3 + [True] * 7


class _Oracle:
    """Answers with the labelled boxes, optionally with every letter shifted by one."""

    def __init__(self, shift: int = 0) -> None:
        self.shift = shift
        self.current = Path()  # the image cv2.imread read last (see _run)

    def recognize(self, image: np.ndarray, conf: float, max_det: int) -> Recognition:
        boxes, classes = read_boxes_xyxy(label_path(self.current), image.shape[1], image.shape[0])
        detections = tuple(
            Detection(
                letter="?",
                class_id=(int(c) + self.shift) % 26,
                confidence=0.9,
                box=Box(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3])),
            )
            for b, c in zip(boxes, classes, strict=True)
        )
        return Recognition(detections=detections, timing_ms={})


def _run(oracle: _Oracle, images: list[Path], monkeypatch: pytest.MonkeyPatch):
    real_imread = cv2.imread

    def imread(path: str, flags: int = cv2.IMREAD_COLOR):
        oracle.current = Path(path)
        return real_imread(path, flags)

    monkeypatch.setattr(cv2, "imread", imread)
    return recognizer_metrics(oracle, images)


def test_perfect_answers_score_full_map_and_wrong_letters_none(subset_dataset, monkeypatch):
    images = sorted((subset_dataset / "valid" / "images").iterdir())
    metrics, counts, tops = _run(_Oracle(), images, monkeypatch)
    assert metrics.map50 == pytest.approx(0.995, abs=1e-3)  # ultralytics' 101-point AP
    assert metrics.map == pytest.approx(0.995, abs=1e-3)
    assert counts.sum() == len(images) and len(metrics.ap_class_index) == (counts > 0).sum()
    assert all(t is not None and t[1] == pytest.approx(0.9) for t in tops)

    wrong, _, _ = _run(_Oracle(shift=1), images, monkeypatch)
    assert wrong.map50 == 0.0 and wrong.mr == 0.0


def test_unreadable_image_is_named(tmp_path: Path):
    bad = tmp_path / "images" / "x.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"x\.jpg"):
        recognizer_metrics(_Oracle(), [bad])


def test_malformed_label_is_named(tmp_path: Path):
    image = tmp_path / "images" / "a.jpg"
    label = tmp_path / "labels" / "a.txt"
    image.parent.mkdir()
    label.parent.mkdir()
    label.write_text("3 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"a\.txt"):
        read_boxes_xyxy(label_path(image), 100, 100)
