"""VALIDATE: each rule on a tiny dataset written by the test, then the real shared dataset."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core.records import LETTERS
from tasks.data.validate import DatasetInvalid, Problem, ValidationReport, validate_dataset

NAMES = ("A", "B", "C")
GOOD = "0 0.5 0.5 0.2 0.3\n"


def _image(path: Path, seed: int, size: tuple[int, int] = (12, 8)) -> Path:
    """Write a tiny noise image; the seed makes its bytes unique."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def _label(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A clean dataset: train a (A), b (B, C); valid c (A); test d (C)."""
    root = tmp_path / "tiny"
    labels = {
        "train": {"a": GOOD, "b": "1 0.4 0.4 0.5 0.5\n2 0.6 0.6 0.1 0.1\n"},
        "valid": {"c": GOOD},
        "test": {"d": "2 0.5 0.5 1 1\n"},
    }
    seed = 0
    for split, items in labels.items():
        for stem, text in items.items():
            seed += 1
            _image(root / split / "images" / f"{stem}.jpg", seed)
            _label(root / split / "labels" / f"{stem}.txt", text)
    return root


def _only(report: ValidationReport) -> Problem:
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


def _assert_error(root: Path, file: str, line: int | None, fragment: str) -> None:
    problem = _only(validate_dataset(root, NAMES))
    assert (problem.severity, problem.file, problem.line) == ("error", file, line)
    assert fragment in problem.message


def test_clean_dataset_counts(tiny: Path) -> None:
    report = validate_dataset(tiny, NAMES)
    assert report.ok and report.problems == ()
    assert report.images == {"train": 2, "valid": 1, "test": 1}
    assert report.boxes["train"] == {"A": 1, "B": 1, "C": 1}
    assert report.boxes["test"] == {"A": 0, "B": 0, "C": 1}
    assert report.backgrounds == {"train": 0, "valid": 0, "test": 0}
    size = report.sizes["train"]
    assert (size.min_width, size.max_width, size.min_height, size.max_height) == (12, 12, 8, 8)
    assert report.class_table()[0] == {"letter": "A", "train": 1, "valid": 1, "test": 0}
    assert "| train | 2 | 0 | 3 | 12 | 8 |" in report.to_markdown()
    assert report.raise_if_invalid() is report


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param(GOOD + "1 0.5 0.5 0.2\n", 2, "expected 5 values", id="four-fields"),
        pytest.param("1 0.5 0.5 0.2 0.2 0.7\n", 1, "expected 5 values", id="six-fields"),
        pytest.param("1 0.5 abc 0.2 0.2\n", 1, "not a number: 'abc'", id="non-numeric"),
        pytest.param("1 0.5 nan 0.2 0.2\n", 1, "not a finite number", id="nan"),
        pytest.param("3 0.5 0.5 0.2 0.2\n", 1, "class id 3 out of range 0..2", id="class-too-big"),
        pytest.param("-1 0.5 0.5 0.2 0.2\n", 1, "class id -1 out of range", id="negative-class"),
        pytest.param("1.5 0.5 0.5 0.2 0.2\n", 1, "not an integer", id="fractional-class"),
        pytest.param("1.0 0.5 0.5 0.2 0.2\n", 1, "not written as an integer", id="float-class"),
        pytest.param("1 1.2 0.5 0.2 0.2\n", 1, "centre (1.2, 0.5) outside", id="centre-out"),
        pytest.param("1 0.5 -0.1 0.2 0.2\n", 1, "centre (0.5, -0.1) outside", id="centre-neg"),
        pytest.param("1 0.5 0.5 1.5 0.2\n", 1, "size 1.5x0.2 outside (0, 1]", id="too-wide"),
        pytest.param("1 0.5 0.5 0 0.2\n", 1, "size 0x0.2 outside (0, 1]", id="zero-size"),
        pytest.param("1 0.5 0.5 0.0001 0.2\n", 1, "degenerate box", id="degenerate"),
        pytest.param("1 0.05 0.5 0.5 0.5\n", 1, "beyond its edge", id="sticks-out"),
    ],
)
def test_bad_label_line(tiny: Path, text: str, line: int, fragment: str) -> None:
    _label(tiny / "train" / "labels" / "b.txt", text)
    _assert_error(tiny, "train/labels/b.txt", line, fragment)


def test_label_without_image(tiny: Path) -> None:
    _label(tiny / "valid" / "labels" / "ghost.txt", GOOD)
    _assert_error(tiny, "valid/labels/ghost.txt", None, "label without image")


@pytest.mark.parametrize(
    "where", ["train/labels/stray.png", "train/stray.png", "stray.png", "extra/stray.png"]
)
def test_image_in_wrong_place(tiny: Path, where: str) -> None:
    _image(tiny / where, seed=99)
    _assert_error(tiny, where, None, "image outside")


def test_non_image_in_images(tiny: Path) -> None:
    _label(tiny / "test" / "images" / "notes.txt", "hello")
    _assert_error(tiny, "test/images/notes.txt", None, "not an image file")


def test_garbage_image(tiny: Path) -> None:
    (tiny / "train" / "images" / "a.jpg").write_bytes(b"definitely not a jpeg")
    _assert_error(tiny, "train/images/a.jpg", None, "cannot decode image")


@pytest.mark.parametrize("keep", [0.5, -2], ids=["half", "no-end-marker"])
def test_truncated_image(tiny: Path, keep: float) -> None:
    photo = _image(tiny / "valid" / "images" / "c.jpg", seed=7, size=(64, 64))
    data = photo.read_bytes()
    photo.write_bytes(data[: int(len(data) * keep) if keep > 0 else int(keep)])
    # A decoder may give up, or decode the rest as grey; either way it is an error.
    problem = _only(validate_dataset(tiny, NAMES))
    assert (problem.severity, problem.file) == ("error", "valid/images/c.jpg")
    assert "truncated image" in problem.message or "cannot decode" in problem.message


def test_duplicate_across_splits_is_leakage(tiny: Path) -> None:
    leaked = tiny / "test" / "images" / "d.jpg"
    leaked.write_bytes((tiny / "train" / "images" / "a.jpg").read_bytes())
    _label(tiny / "test" / "labels" / "d.txt", GOOD)

    problem = _only(validate_dataset(tiny, NAMES))
    assert (problem.severity, problem.file) == ("error", "test/images/d.jpg")
    assert "same bytes as train/images/a.jpg" in problem.message and "leakage" in problem.message

    allowed = validate_dataset(tiny, NAMES, allow_leakage=True)
    assert allowed.ok and _only(allowed).severity == "warning"


def test_duplicate_within_split_is_warning(tiny: Path) -> None:
    copy = tiny / "train" / "images" / "a2.jpg"
    copy.write_bytes((tiny / "train" / "images" / "a.jpg").read_bytes())
    _label(tiny / "train" / "labels" / "a2.txt", GOOD)
    report = validate_dataset(tiny, NAMES)
    assert report.ok and _only(report).severity == "warning"


def test_background_images_are_counted(tiny: Path) -> None:
    _image(tiny / "train" / "images" / "empty-room.jpg", seed=50)
    _image(tiny / "train" / "images" / "blank-label.png", seed=51)
    _label(tiny / "train" / "labels" / "blank-label.txt", "\n")
    report = validate_dataset(tiny, NAMES)
    assert report.ok and report.problems == ()
    assert report.images["train"] == 4 and report.backgrounds["train"] == 2


def test_missing_split_folders(tiny: Path) -> None:
    for split in ("valid", "test"):
        for path in sorted((tiny / split).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (tiny / split).rmdir()
    report = validate_dataset(tiny, NAMES)
    assert [(p.severity, p.file) for p in report.problems] == [
        ("warning", "test"),
        ("error", "valid"),
    ]
    assert report.images == {"train": 2, "valid": 0, "test": 0}


def test_all_problems_reported_together(tiny: Path) -> None:
    _label(tiny / "train" / "labels" / "b.txt", GOOD + "7 0.5 0.5 0.2 0.2\n\n1 x 0.5 0.2 0.2\n")
    _label(tiny / "valid" / "labels" / "ghost.txt", GOOD)
    (tiny / "test" / "images" / "d.jpg").write_bytes(b"\x00" * 10)

    report = validate_dataset(tiny, NAMES)

    located = [(p.file, p.line) for p in report.errors]
    assert located == [
        ("test/images/d.jpg", None),
        ("train/labels/b.txt", 2),
        ("train/labels/b.txt", 4),
        ("valid/labels/ghost.txt", None),
    ]
    with pytest.raises(DatasetInvalid) as info:
        report.raise_if_invalid()
    message = str(info.value)
    assert "4 validation errors" in message
    assert "train/labels/b.txt:2: class id 7 out of range 0..2" in message
    assert "train/labels/b.txt:4: not a number: 'x'" in message
    assert "test/images/d.jpg: cannot decode image" in message
    assert "valid/labels/ghost.txt: label without image" in message
    assert info.value.report is report
    assert pickle.loads(pickle.dumps(info.value)).report == report


def test_error_message_is_capped(tiny: Path) -> None:
    _label(tiny / "train" / "labels" / "b.txt", "9 0.5 0.5 0.2 0.2\n" * 60)
    report = validate_dataset(tiny, NAMES)
    assert len(report.errors) == 60  # every line, although each repeats line 1
    message = str(DatasetInvalid(report))
    assert message.count("class id 9") == 50 and message.endswith("and 10 more")
    assert "and 10 more" in report.to_markdown()


def test_write_json_round_trips_atomically(tiny: Path, tmp_path: Path) -> None:
    _label(tiny / "valid" / "labels" / "ghost.txt", GOOD)
    report = validate_dataset(tiny, NAMES)
    target = tmp_path / "out" / "validation.json"
    assert report.write_json(target) == target
    assert ValidationReport.model_validate_json(target.read_text()) == report
    assert json.loads(target.read_text())["problems"][0]["file"] == "valid/labels/ghost.txt"
    report.write_json(target)  # replacing an existing file works too
    assert sorted(p.name for p in target.parent.iterdir()) == ["validation.json"]


def test_real_shared_dataset(shared_dataset: Path) -> None:
    started = time.perf_counter()
    report = validate_dataset(shared_dataset, LETTERS)
    elapsed = time.perf_counter() - started

    assert report.ok, report.to_markdown()
    assert report.images == {"train": 1512, "valid": 144, "test": 72}
    assert report.backgrounds == {"train": 0, "valid": 0, "test": 0}
    assert {split: sum(boxes.values()) for split, boxes in report.boxes.items()} == report.images
    assert report.boxes["test"]["E"] == 0 and report.boxes["test"]["L"] == 0
    assert all(report.boxes["train"][letter] > 0 for letter in LETTERS)
    assert report.sizes["valid"].min_width == report.sizes["valid"].max_width == 416
    assert elapsed < 30, f"validating the shared dataset took {elapsed:.1f}s"
