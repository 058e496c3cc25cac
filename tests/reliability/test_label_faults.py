"""Reliability: bad label files through the validator and the one YOLO label reader.

Each case writes one bad line into ``train/labels/b.txt`` of a clean dataset and checks that the
validator reports exactly that file, line and problem, and that the reader used by the later
stages (augment, crops, evaluate) refuses the same line with a one-line error naming the file
and the line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.records import LETTERS
from tasks.data.augment import AugmentConfig, augment_dataset
from tasks.data.validate import Problem, validate_dataset
from tasks.data.yolo_format import read_label_lines

LABEL = "train/labels/b.txt"


def _only_error(root: Path) -> Problem:
    """The single problem the validator finds; it must be an error."""
    report = validate_dataset(root, LETTERS)
    assert len(report.problems) == 1, report.problems
    problem = report.problems[0]
    assert problem.severity == "error" and not report.ok
    assert "\n" not in str(problem)
    return problem


def _bad_line(root: Path, text: str, fragment: str, line: int = 2) -> None:
    """Put ``text`` at ``line`` of the label file; validator and reader must both name it."""
    label = root / LABEL
    body = ["1 0.5 0.5 0.5 0.5"] * (line - 1) + [text]
    label.write_text("\n".join(body) + "\n")

    problem = _only_error(root)
    assert (problem.file, problem.line) == (LABEL, line)
    assert fragment in problem.message
    assert str(problem).startswith(f"{LABEL}:{line}: ")

    with pytest.raises(ValueError) as error:
        read_label_lines(label, nc=len(LETTERS))
    message = str(error.value)
    assert "\n" not in message
    assert str(label) in message and f"line {line}" in message and fragment in message


def test_class_id_26_of_26_classes_is_out_of_range(dataset: Path) -> None:
    _bad_line(dataset, "26 0.5 0.5 0.2 0.2", "class id 26 out of range 0..25")


def test_class_id_written_as_float_is_refused(dataset: Path) -> None:
    _bad_line(dataset, "1.0 0.5 0.5 0.2 0.2", "class id 1.0 is not written as an integer (write 1)")


def test_nan_coordinate_is_refused(dataset: Path) -> None:
    _bad_line(dataset, "1 nan 0.5 0.2 0.2", "not a finite number: 'nan'")


def test_coordinates_above_one_are_refused(dataset: Path) -> None:
    (dataset / LABEL).write_text("1 0.5 0.5 0.5 0.5\n1 1.5 0.5 0.2 0.2\n")
    problem = _only_error(dataset)
    assert (problem.file, problem.line) == (LABEL, 2)
    assert problem.message == "box centre (1.5, 0.5) outside [0, 1]"
    (dataset / LABEL).write_text("1 0.5 0.5 1.5 0.2\n")
    problem = _only_error(dataset)
    assert (problem.line, problem.message) == (1, "box size 1.5x0.2 outside (0, 1]")


def test_negative_coordinates_are_refused(dataset: Path) -> None:
    (dataset / LABEL).write_text("1 0.5 -0.1 0.2 0.2\n")
    problem = _only_error(dataset)
    assert (problem.file, problem.line) == (LABEL, 1)
    assert problem.message == "box centre (0.5, -0.1) outside [0, 1]"
    (dataset / LABEL).write_text("1 0.5 0.5 -0.2 0.2\n")
    assert _only_error(dataset).message == "box size -0.2x0.2 outside (0, 1]"


def test_label_line_with_four_fields_is_refused(dataset: Path) -> None:
    _bad_line(dataset, "1 0.5 0.5 0.2", "expected 5 values 'class x y w h', got 4")


def test_label_line_with_six_fields_is_refused(dataset: Path) -> None:
    _bad_line(dataset, "1 0.5 0.5 0.2 0.2 0.9", "expected 5 values 'class x y w h', got 6")


def test_crlf_line_endings_are_accepted_and_parse_like_lf(dataset: Path, tmp_path: Path) -> None:
    lines = ["1 0.5 0.5 0.5 0.5", "2 0.25 0.75 0.2 0.3"]
    lf_report = validate_dataset(_write(dataset / LABEL, "\n".join(lines) + "\n"), LETTERS)
    lf_boxes = read_label_lines(dataset / LABEL, nc=len(LETTERS))

    (dataset / LABEL).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    assert b"\r\n" in (dataset / LABEL).read_bytes()
    crlf_report = validate_dataset(dataset, LETTERS)
    assert crlf_report.ok and crlf_report.problems == ()
    assert crlf_report.boxes == lf_report.boxes and crlf_report.boxes["train"]["C"] == 1
    assert read_label_lines(dataset / LABEL, nc=len(LETTERS)) == lf_boxes
    assert len(lf_boxes) == 2

    # What the validator accepts, augmentation accepts: the CRLF file is augmented too.
    config = AugmentConfig(copies=1, workers=1, augment_eval_splits=False)
    counts = augment_dataset(dataset, tmp_path / "augmented", config, LETTERS)
    assert counts["train"] == 4
    copy = tmp_path / "augmented" / "train" / "labels" / "b__aug0.txt"
    assert [box.cls for box in read_label_lines(copy, nc=len(LETTERS))] == [1, 2]


def _write(label: Path, text: str) -> Path:
    """Write a label file; returns the dataset root it belongs to."""
    label.write_text(text)
    return label.parents[2]


def test_label_file_without_image_is_reported(dataset: Path) -> None:
    (dataset / "train" / "labels" / "orphan.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    problem = _only_error(dataset)
    assert (problem.file, problem.line) == ("train/labels/orphan.txt", None)
    assert problem.message == "label without image: no train/images/orphan.* file"
