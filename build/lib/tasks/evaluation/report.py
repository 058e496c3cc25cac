"""What an evaluation reports: overall metrics, one row per letter, the confusion matrix.

Built only by :func:`tasks.evaluation.evaluate.evaluate` from a complete evaluation; the registry,
the flows and the app's model page read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.core.records import LETTERS, Record
from tasks.evaluation.significance import Interval, bootstrap_interval

BACKGROUND = "background"
CONFUSION_LABELS: tuple[str, ...] = (*LETTERS, BACKGROUND)


class LetterRow(Record):
    """One letter's results; every metric is ``None`` when the letter is absent from the split."""

    letter: str
    n_boxes: int = Field(ge=0, description="Labelled boxes of this letter in the split.")
    present: bool
    ap50: float | None = None
    ap50_95: float | None = None
    top1_accuracy: float | None = None

    @model_validator(mode="after")
    def _absent_has_no_metrics(self) -> LetterRow:
        if self.present != (self.n_boxes > 0):
            raise ValueError(f"{self.letter}: present must equal n_boxes > 0")
        if not self.present and (self.ap50, self.ap50_95, self.top1_accuracy) != (None,) * 3:
            raise ValueError(f"{self.letter} is absent; its metrics must be None")
        return self


class EvalReport(Record):
    """The outcome of one evaluation; only ever built from a complete evaluation."""

    split: Literal["test", "valid"]
    weights: str
    imgsz: int
    n_images: int = Field(gt=0)
    map50: float
    map50_95: float
    precision: float
    recall: float
    top1_accuracy: float
    per_letter: tuple[LetterRow, ...]
    absent_letters: tuple[str, ...]
    confusion: list[list[int]] = Field(
        description="27×27 top-1 counts: rows true letter (+ background), cols predicted (+ none)."
    )
    confusion_labels: tuple[str, ...] = CONFUSION_LABELS
    confusion_png: Path
    samples_jpg: Path
    image_correct: dict[str, bool] = Field(
        default_factory=dict,
        description="Per labelled image (file name): whether its top-1 letter is right; what "
        "intervals and paired comparisons are computed from.",
    )

    def top1_interval(self) -> Interval:
        """Top-1 with its 95% bootstrap interval over this split's labelled images."""
        return bootstrap_interval(list(self.image_correct.values()))

    def metrics_dict(self, prefix: str | None = None) -> dict[str, float]:
        """Flat overall metrics for MLflow, e.g. ``{"test_map50": 0.91, ...}``.

        Args:
            prefix: Key prefix; defaults to the split name.

        Returns:
            Only finite floats (MLflow rejects NaN in some stores and they mean nothing here).
        """
        prefix = self.split if prefix is None else prefix
        overall = self._overall()
        if self.image_correct:
            interval = self.top1_interval()
            overall |= {"top1_low": interval.low, "top1_high": interval.high}
        return {f"{prefix}_{k}": v for k, v in overall.items() if math.isfinite(v)}

    def _overall(self) -> dict[str, float]:
        return {
            "map50": float(self.map50),
            "map50_95": float(self.map50_95),
            "precision": float(self.precision),
            "recall": float(self.recall),
            "top1": float(self.top1_accuracy),
        }

    def per_letter_rows(self) -> list[dict[str, Any]]:
        """Per-letter rows as plain dicts (for an MLflow table artifact)."""
        return [row.model_dump() for row in self.per_letter]

    def to_markdown(self) -> str:
        """A Markdown summary: overall metrics, then one row per letter (absent ones marked)."""

        def cell(value: float | None) -> str:
            return "absent" if value is None else f"{value:.3f}"

        lines = [
            f"## Evaluation on `{self.split}`",
            "",
            f"Weights `{self.weights}`, {self.n_images} images at imgsz {self.imgsz}.",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {k} | {v:.4f} |" for k, v in self._overall().items()),
            *(
                [f"| top1, 95% interval over images | {self.top1_interval()} |"]
                if self.image_correct
                else []
            ),
            "",
            "| letter | boxes | AP50 | AP50-95 | top-1 |",
            "|---|---|---|---|---|",
        ]
        for row in self.per_letter:
            metrics = (cell(row.ap50), cell(row.ap50_95), cell(row.top1_accuracy))
            lines.append(f"| {row.letter} | {row.n_boxes} | {' | '.join(metrics)} |")
        if self.absent_letters:
            lines += ["", f"Absent from this split: {', '.join(self.absent_letters)}."]
        return "\n".join(lines) + "\n"
