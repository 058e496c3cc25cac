"""The evaluation report: letter rows, flat metrics for MLflow, and its Markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tasks.core.records import LETTERS
from tasks.evaluation.report import CONFUSION_LABELS, EvalReport, LetterRow


def _rows() -> tuple[LetterRow, ...]:
    rows = [LetterRow(letter="A", n_boxes=3, present=True, ap50=0.9, ap50_95=0.5, top1_accuracy=1)]
    rows += [LetterRow(letter=letter, n_boxes=0, present=False) for letter in LETTERS[1:]]
    return tuple(rows)


def _report(**changes: Any) -> EvalReport:
    fields: dict[str, Any] = {
        "split": "valid",
        "weights": "runs/x/best.pt",
        "imgsz": 256,
        "n_images": 4,
        "map50": 0.9,
        "map50_95": 0.5,
        "precision": 0.8,
        "recall": float("nan"),
        "top1_accuracy": 0.75,
        "per_letter": _rows(),
        "absent_letters": tuple(LETTERS[1:]),
        "confusion": [[0] * 27 for _ in range(27)],
        "confusion_png": Path("confusion.png"),
        "samples_jpg": Path("samples.jpg"),
        "image_correct": {"a.jpg": True, "b.jpg": True, "c.jpg": True, "d.jpg": False},
    }
    return EvalReport(**(fields | changes))


def test_a_letter_row_is_present_exactly_when_it_has_boxes():
    with pytest.raises(ValidationError, match="present must equal"):
        LetterRow(letter="B", n_boxes=2, present=False)
    with pytest.raises(ValidationError, match="absent; its metrics must be None"):
        LetterRow(letter="B", n_boxes=0, present=False, ap50=0.0)


def test_a_report_needs_images():
    with pytest.raises(ValidationError):
        _report(n_images=0)
    assert CONFUSION_LABELS[-1] == "background" and len(CONFUSION_LABELS) == 27


def test_metrics_for_mlflow_are_flat_finite_and_prefixed():
    metrics = _report().metrics_dict()
    assert metrics["valid_map50"] == 0.9 and metrics["valid_top1"] == 0.75
    assert "valid_recall" not in metrics  # NaN is left out
    assert metrics["valid_top1_low"] <= 0.75 <= metrics["valid_top1_high"]
    assert set(_report().metrics_dict("champion_valid")) == {
        f"champion_valid_{key}" for key in ("map50", "map50_95", "precision", "top1", "top1_low",
                                             "top1_high")
    }  # fmt: skip
    without = _report(image_correct={}).metrics_dict()
    assert "valid_top1_low" not in without and all(math.isfinite(v) for v in without.values())


def test_top1_interval_is_over_the_images():
    interval = _report().top1_interval()
    assert interval.value == 0.75 and interval.n == 4


def test_per_letter_rows_are_plain_dicts():
    rows = _report().per_letter_rows()
    assert rows[0] == {"letter": "A", "n_boxes": 3, "present": True, "ap50": 0.9,
                       "ap50_95": 0.5, "top1_accuracy": 1.0}  # fmt: skip
    assert len(rows) == 26


def test_markdown_marks_absent_letters():
    text = _report().to_markdown()
    assert text.startswith("## Evaluation on `valid`")
    assert "Weights `runs/x/best.pt`, 4 images at imgsz 256." in text
    assert "| top1 | 0.7500 |" in text and "| top1, 95% interval over images | 0.750 [" in text
    assert "| A | 3 | 0.900 | 0.500 | 1.000 |" in text
    assert "| B | 0 | absent | absent | absent |" in text
    assert "Absent from this split: B, C," in text
    assert "interval" not in _report(image_correct={}).to_markdown()
