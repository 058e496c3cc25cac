"""The validation report: verdict, class table, Markdown, JSON, and the error that carries it."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tasks.data.validate_report import (
    MAX_LISTED,
    DatasetInvalid,
    Problem,
    SizeStats,
    ValidationReport,
)

ERROR = Problem(severity="error", file="train/labels/a.txt", line=3, message="bad class")
WARNING = Problem(severity="warning", file="valid/images/b.jpg", message="tiny image")


def _report(*problems: Problem) -> ValidationReport:
    return ValidationReport(
        root="/data/asl",
        names=("A", "B"),
        images={"train": 3, "valid": 1},
        backgrounds={"train": 1},
        boxes={"train": {"A": 2, "B": 1}, "valid": {"B": 1}},
        sizes={"train": SizeStats(min_width=10, max_width=20, min_height=8, max_height=8)},
        problems=problems,
    )


def test_a_problem_names_its_file_and_line():
    assert str(ERROR) == "train/labels/a.txt:3: bad class"
    assert str(WARNING) == "valid/images/b.jpg: tiny image"


def test_warnings_do_not_fail_a_dataset():
    report = _report(WARNING)
    assert report.ok and report.warnings == (WARNING,) and report.errors == ()
    assert report.raise_if_invalid() is report
    assert not _report(ERROR, WARNING).ok


def test_class_table_has_a_column_per_split():
    assert _report().class_table() == [
        {"letter": "A", "train": 2, "valid": 0},
        {"letter": "B", "train": 1, "valid": 1},
    ]


def test_markdown_summarizes_splits_and_lists_problems():
    text = _report(ERROR, WARNING).to_markdown()
    assert text.startswith("## Dataset validation: FAILED\n\n1 errors, 1 warnings.")
    assert "| train | 3 | 1 | 3 | 10–20 | 8 |" in text
    assert "| valid | 1 | 0 | 1 | - | - |" in text  # no readable image size
    assert "- **error** `train/labels/a.txt:3: bad class`" in text
    assert _report().to_markdown().startswith("## Dataset validation: OK")
    assert "### Problems" not in _report().to_markdown()


def test_long_problem_lists_are_capped():
    many = [ERROR.model_copy(update={"line": n}) for n in range(MAX_LISTED + 5)]
    text = _report(*many).to_markdown()
    assert "- … and 5 more" in text and text.count("- **error**") == MAX_LISTED
    message = str(DatasetInvalid(_report(*many)))
    assert message.startswith(f"dataset /data/asl has {MAX_LISTED + 5} validation errors:")
    assert message.endswith("... and 5 more")


def test_json_round_trips(tmp_path: Path):
    report = _report(ERROR)
    path = report.write_json(tmp_path / "reports" / "validation.json")
    assert ValidationReport.model_validate_json(path.read_text()) == report


def test_the_error_carries_the_report_and_survives_pickling():
    with pytest.raises(DatasetInvalid) as error:
        _report(ERROR, WARNING).raise_if_invalid()
    assert "train/labels/a.txt:3: bad class" in str(error.value)
    assert "tiny image" not in str(error.value)  # warnings are not errors
    copy = pickle.loads(pickle.dumps(error.value))  # Prefect pickles task exceptions
    assert copy.report == error.value.report and str(copy) == str(error.value)
