"""Reliability: bad image files through the validator, and what it accepts through augmentation.

Each case adds one file to a clean dataset and checks the validator's verdict on exactly that
file. The validator reports every problem at once; whatever it accepts, augmentation accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core.records import LETTERS
from tasks.data.augment import AugmentConfig, augment_dataset
from tasks.data.validate import DatasetInvalid, Problem, validate_dataset
from tasks.data.yolo_format import read_label_lines
from tasks.inference.image_bytes import MAX_PIXELS

Encoder = Callable[..., bytes]


def _add(root: Path, split: str, name: str, data: bytes, label: str | None = "3 0.5 0.5 0.5 0.5\n"):
    """Put an image (and its label, unless None) into a split; returns its relative path."""
    (root / split / "images" / name).write_bytes(data)
    if label is not None:
        (root / split / "labels" / f"{Path(name).stem}.txt").write_text(label)
    return f"{split}/images/{name}"


def _only_error(root: Path) -> Problem:
    report = validate_dataset(root, LETTERS)
    assert len(report.problems) == 1, report.problems
    problem = report.problems[0]
    assert problem.severity == "error" and not report.ok and "\n" not in str(problem)
    return problem


def test_corrupt_jpeg_is_reported(
    dataset: Path, encoder: Encoder, opencv_decodes: Callable[[bytes], bool]
) -> None:
    jpeg = bytearray(encoder(".jpg", seed=7))
    jpeg[20:400] = bytes(380)  # tables and frame header zeroed; start and end markers intact
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    assert not opencv_decodes(bytes(jpeg))
    path = _add(dataset, "train", "corrupt.jpg", bytes(jpeg))

    problem = _only_error(dataset)
    assert (problem.file, problem.line) == (path, None)
    assert problem.message == "cannot decode image: corrupt or not an image"


def test_truncated_jpeg_is_reported(dataset: Path, encoder: Encoder) -> None:
    jpeg = encoder(".jpg", seed=8)
    path = _add(dataset, "valid", "cut.jpg", jpeg[: len(jpeg) * 2 // 3])

    problem = _only_error(dataset)
    assert (problem.file, problem.line) == (path, None)
    assert problem.message == "truncated image: the file ends before its end marker"


def test_text_file_named_jpg_is_reported(dataset: Path) -> None:
    path = _add(dataset, "train", "notes.jpg", b"shopping list: eggs, milk\n")
    problem = _only_error(dataset)
    assert problem.file == path
    assert problem.message == "cannot decode image: corrupt or not an image"


def test_zero_byte_image_is_reported_as_empty(dataset: Path) -> None:
    path = _add(dataset, "train", "empty.jpg", b"")
    _add(dataset, "valid", "empty-too.jpg", b"")  # two empty files are not "leakage"
    report = validate_dataset(dataset, LETTERS)
    assert [(p.file, p.message) for p in report.problems] == [
        (path, "empty image file (0 bytes)"),
        ("valid/images/empty-too.jpg", "empty image file (0 bytes)"),
    ]


def test_png_with_alpha_is_accepted_by_validator_and_augment(
    dataset: Path, encoder: Encoder, tmp_path: Path
) -> None:
    _add(dataset, "train", "alpha.png", encoder(".png", seed=9, mode="RGBA"))
    _accepted_then_augmented(dataset, tmp_path, "alpha")


def test_grayscale_image_is_accepted_by_validator_and_augment(
    dataset: Path, encoder: Encoder, tmp_path: Path
) -> None:
    _add(dataset, "train", "gray.jpg", encoder(".jpg", seed=10, mode="L"))
    _add(dataset, "train", "gray-png.png", encoder(".png", seed=11, mode="L"))
    _accepted_then_augmented(dataset, tmp_path, "gray", "gray-png")


def _accepted_then_augmented(root: Path, tmp_path: Path, *stems: str) -> None:
    """The validator finds nothing; augmentation then writes a 3-channel copy of each stem."""
    report = validate_dataset(root, LETTERS)
    assert report.ok and report.problems == ()
    config = AugmentConfig(copies=1, workers=1)
    out = tmp_path / "augmented"
    augment_dataset(root, out, config, LETTERS)
    for stem in stems:
        copy = out / "train" / "images" / f"{stem}__aug0.jpg"
        assert copy.is_file(), sorted(p.name for p in (out / "train" / "images").iterdir())
        assert read_label_lines(out / "train" / "labels" / f"{stem}__aug0.txt")[0].cls == 3
    assert validate_dataset(out, LETTERS).ok


def test_same_image_in_train_and_valid_or_test_is_leakage(dataset: Path) -> None:
    train_bytes = (dataset / "train" / "images" / "a.jpg").read_bytes()
    _add(dataset, "valid", "copy.jpg", train_bytes)
    _add(dataset, "test", "copy.jpg", train_bytes)

    report = validate_dataset(dataset, LETTERS)
    same = "same bytes as train/images/a.jpg: leakage between train and"
    assert [(p.severity, p.file, p.message) for p in report.problems] == [
        ("error", "test/images/copy.jpg", f"{same} test"),
        ("error", "valid/images/copy.jpg", f"{same} valid"),
    ]
    assert validate_dataset(dataset, LETTERS, allow_leakage=True).ok


def test_every_problem_is_reported_at_once(dataset: Path, encoder: Encoder) -> None:
    _add(dataset, "train", "text.jpg", b"not an image")
    _add(dataset, "train", "empty.png", b"")
    _add(dataset, "valid", "leak.jpg", (dataset / "train" / "images" / "b.jpg").read_bytes())
    (dataset / "train" / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.5 0.5\n26 0.5 0.5 0.2 0.2\n1 nan 0.5 0.2 0.2\n1 0.5 0.5 0.2\n"
    )
    (dataset / "valid" / "labels" / "c.txt").write_bytes(b"1.0 0.5 0.5 0.2 0.2\r\n2 1.5 0 1 1\r\n")
    (dataset / "test" / "labels" / "lost.txt").write_text("1 0.5 0.5 0.5 0.5\n")

    with pytest.raises(DatasetInvalid) as raised:
        validate_dataset(dataset, LETTERS).raise_if_invalid()
    report = raised.value.report
    expected = {
        ("train/images/text.jpg", None, "cannot decode image: corrupt or not an image"),
        ("train/images/empty.png", None, "empty image file (0 bytes)"),
        ("valid/images/leak.jpg", None, "leakage between train and valid"),
        ("train/labels/a.txt", 2, "class id 26 out of range 0..25"),
        ("train/labels/a.txt", 3, "not a finite number: 'nan'"),
        ("train/labels/a.txt", 4, "expected 5 values 'class x y w h', got 4"),
        ("valid/labels/c.txt", 1, "class id 1.0 is not written as an integer"),
        ("valid/labels/c.txt", 2, "box centre (1.5, 0) outside [0, 1]"),
        ("test/labels/lost.txt", None, "label without image"),
    }
    found = {(p.file, p.line, p.message) for p in report.errors}
    for file, line, fragment in expected:
        assert any(f == file and n == line and fragment in m for f, n, m in found), (file, line)
    assert len(report.errors) == len(expected)
    message = str(raised.value)
    assert f"has {len(expected)} validation errors" in message
    assert "train/labels/a.txt:3: not a finite number" in message


def test_image_in_a_sub_folder_of_images_is_refused(dataset: Path, encoder: Encoder) -> None:
    # Augment, crops and evaluate list only <split>/images itself: a nested image would be lost.
    (dataset / "train" / "images" / "batch2").mkdir()
    (dataset / "train" / "labels" / "batch2").mkdir()
    path = _add(dataset, "train", "batch2/e.jpg", encoder(".jpg", seed=12), label=None)
    (dataset / "train" / "labels" / "batch2" / "e.txt").write_text("3 0.5 0.5 0.5 0.5\n")

    report = validate_dataset(dataset, LETTERS)
    assert [(p.file, p.message) for p in report.errors] == [
        (path, "image in a sub-folder of train/images: move it up"),
        ("train/labels/batch2/e.txt", "label without image: no train/images/e.* file"),
    ]


def test_images_declaring_too_many_pixels_are_refused_by_their_header(
    dataset: Path, huge_png: Callable[[int, int], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few hundred bytes each; decoded, 30000×30000 would take 2.7 GB (one per thread).
    bomb, phone = huge_png(30000, 30000), huge_png(8160, 6144)  # 900 MP; 50.1 MP > the cap
    huge = {bomb, phone}
    decode = cv2.imdecode

    def decode_small_only(buffer: np.ndarray, flags: int) -> np.ndarray | None:
        assert buffer.tobytes() not in huge, "a huge image was decoded, not refused by header"
        return decode(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", decode_small_only)
    _add(dataset, "train", "bomb.png", bomb)
    _add(dataset, "valid", "phone.png", phone)

    report = validate_dataset(dataset, LETTERS)
    accepted = f"images up to {MAX_PIXELS:,} pixels are accepted"
    assert [(p.severity, p.file, p.message) for p in report.problems] == [
        (
            "error",
            "train/images/bomb.png",
            f"too many pixels: over 178,956,970 declared; {accepted}",
        ),
        ("error", "valid/images/phone.png", f"too many pixels: 8160×6144 declared; {accepted}"),
    ]
    assert report.images == {"train": 3, "valid": 2, "test": 1}
