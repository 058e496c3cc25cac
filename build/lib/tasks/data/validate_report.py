"""The result of VALIDATE: counts, image sizes and every problem found, plus its renderings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tasks.core.files import write_atomic
from tasks.core.records import Record

Severity = Literal["error", "warning"]
MAX_LISTED = 50


class Problem(Record):
    """One thing wrong with a dataset file."""

    severity: Severity
    file: str = Field(description="Path relative to the dataset root (posix).")
    line: int | None = Field(default=None, description="1-based label line, if about one.")
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class SizeStats(Record):
    """Smallest and largest image dimensions in a split (None when it has no readable image)."""

    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None


class ValidationReport(Record):
    """What validating a YOLO dataset found; ``ok`` when there is no error."""

    root: str
    names: tuple[str, ...]
    images: dict[str, int] = Field(description="Image files per split.")
    backgrounds: dict[str, int] = Field(description="Images without boxes per split.")
    boxes: dict[str, dict[str, int]] = Field(description="Valid boxes per split, then class name.")
    sizes: dict[str, SizeStats] = Field(description="Image size range per split.")
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems that make the dataset unusable."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """Problems worth a look that do not block training."""
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when no problem is an error."""
        return not self.errors

    def class_table(self) -> list[dict[str, str | int]]:
        """Rows of boxes per class for a table artifact: ``letter`` then one column per split."""
        return [
            {"letter": name, **{split: counts.get(name, 0) for split, counts in self.boxes.items()}}
            for name in self.names
        ]

    def to_markdown(self) -> str:
        """Render the report as Markdown: verdict, split summary, problems (capped)."""
        verdict = "OK" if self.ok else "FAILED"
        lines = [
            f"## Dataset validation: {verdict}",
            "",
            f"{len(self.errors)} errors, {len(self.warnings)} warnings.",
            "",
            "| split | images | backgrounds | boxes | width | height |",
            "|---|---|---|---|---|---|",
        ]
        for split, count in self.images.items():
            size = self.sizes.get(split, SizeStats())
            lines.append(
                f"| {split} | {count} | {self.backgrounds.get(split, 0)} "
                f"| {sum(self.boxes.get(split, {}).values())} "
                f"| {_span(size.min_width, size.max_width)} "
                f"| {_span(size.min_height, size.max_height)} |"
            )
        if self.problems:
            lines += ["", "### Problems", ""]
            lines += [f"- **{p.severity}** `{p}`" for p in self.problems[:MAX_LISTED]]
            if len(self.problems) > MAX_LISTED:
                lines.append(f"- … and {len(self.problems) - MAX_LISTED} more")
        return "\n".join(lines) + "\n"

    def write_json(self, path: Path) -> Path:
        """Write the report as JSON atomically (temp file + rename).

        Args:
            path: Destination file; its folder is created if missing.

        Returns:
            ``path``.
        """
        return write_atomic(path, self.model_dump_json(indent=2))

    def raise_if_invalid(self) -> ValidationReport:
        """Return the report itself, or raise :class:`DatasetInvalid` if it has errors."""
        if not self.ok:
            raise DatasetInvalid(self)
        return self


def _span(low: int | None, high: int | None) -> str:
    if low is None or high is None:
        return "-"
    return str(low) if low == high else f"{low}–{high}"


class DatasetInvalid(Exception):
    """A dataset has validation errors; ``report`` holds them all."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        errors = report.errors
        lines = [f"dataset {report.root} has {len(errors)} validation errors:"]
        lines += [f"  {problem}" for problem in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"  ... and {len(errors) - MAX_LISTED} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[DatasetInvalid], tuple[ValidationReport]]:
        # Prefect pickles task exceptions; rebuild from the report, not the message.
        return (type(self), (self.report,))
