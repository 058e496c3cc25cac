"""The YOLO format: label lines and files, image listing and data.yaml, on files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks.data.sources import AcquireError
from tasks.data.yolo_format import (
    LabelLine,
    count_images,
    count_split_images,
    data_yaml_spec,
    format_labels,
    is_image,
    label_fields,
    label_line_problems,
    label_path,
    list_images,
    parse_label_line,
    read_boxes_xyxy,
    read_data_yaml,
    read_label_lines,
    read_labels,
    read_names,
    split_images,
    write_data_yaml,
)


def _write(path: Path, text: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# --- label lines -------------------------------------------------------------------------


def test_a_good_line_has_no_problems():
    assert label_line_problems(label_fields("3 0.5 0.5 0.2 0.4"), nc=26) == []
    assert label_fields("   ") == ()


@pytest.mark.parametrize(
    ("line", "nc", "fragment"),
    [
        ("0 0.5 0.5 0.2", 3, "expected 5 values"),
        ("0 0.5 x 0.2 0.2", 3, "not a number: 'x'"),
        ("0 0.5 nan 0.2 0.2", 3, "not a finite number"),
        ("1.5 0.5 0.5 0.2 0.2", 3, "is not an integer"),
        ("1.0 0.5 0.5 0.2 0.2", 3, "not written as an integer (write 1)"),
        ("3 0.5 0.5 0.2 0.2", 3, "out of range 0..2"),
        ("-1 0.5 0.5 0.2 0.2", None, "out of range 0.."),
        ("0 1.2 0.5 0.2 0.2", 3, "outside [0, 1]"),
        ("0 0.5 0.5 0 0.2", 3, "box size 0x0.2 outside (0, 1]"),
        ("0 0.5 0.5 0.0001 0.2", 3, "degenerate box"),
        ("0 0.05 0.5 0.3 0.2", 3, "beyond its edge"),
    ],
)
def test_each_rule_of_a_label_line(line: str, nc: int | None, fragment: str):
    problems = label_line_problems(label_fields(line), nc)
    assert len(problems) == 1 and fragment in problems[0], problems


def test_a_small_overflow_is_tolerated_and_geometry_can_be_skipped():
    assert label_line_problems(label_fields("0 0.11 0.5 0.24 0.2"), 3) == []  # 1% out
    assert label_line_problems(label_fields("0 5 5 5 5"), 3, geometry=False) == []
    assert label_line_problems(label_fields("7 0.5 0.5 0.2 0.2"), None) == []  # any class id


def test_parse_label_line():
    assert parse_label_line("2 0.5 0.25 0.1 0.2\n") == LabelLine(2, 0.5, 0.25, 0.1, 0.2)
    assert parse_label_line("  \n") is None
    with pytest.raises(ValueError, match="out of range"):
        parse_label_line("5 0.5 0.5 0.1 0.1", nc=3)
    # geometry is the validator's business; parsing only needs numbers
    assert parse_label_line("0 1.5 0.5 0.1 0.1") == LabelLine(0, 1.5, 0.5, 0.1, 0.1)


def test_box_in_pixels():
    assert LabelLine(0, 0.5, 0.5, 0.5, 0.25).xyxy(200, 100) == (50.0, 37.5, 150.0, 62.5)


# --- label files -------------------------------------------------------------------------


def test_label_path_sits_beside_the_images_folder(tmp_path: Path):
    image = tmp_path / "train" / "images" / "A1.rf.x.jpg"
    assert label_path(image) == tmp_path / "train" / "labels" / "A1.rf.x.txt"


def test_read_label_lines_skips_blanks_and_a_missing_file_is_background(tmp_path: Path):
    label = _write(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.2\n\n1 0.1 0.2 0.1 0.1\n")
    assert [line.cls for line in read_label_lines(label)] == [0, 1]
    assert read_label_lines(tmp_path / "missing.txt") == []


def test_a_bad_line_names_the_file_and_line(tmp_path: Path):
    label = _write(tmp_path / "bad.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"bad\.txt: expected 'class cx cy w h' at line 2"):
        read_label_lines(label)


def test_read_labels_and_boxes(tmp_path: Path):
    label = _write(tmp_path / "a.txt", "0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.1 0.1\n")
    classes, boxes = read_labels(label)
    assert classes == [0, 2] and boxes.shape == (2, 4) and boxes.dtype == np.float32
    xyxy, ids = read_boxes_xyxy(label, 100, 200)
    np.testing.assert_allclose(xyxy[0], [25, 50, 75, 150])
    assert ids.tolist() == [0, 2]
    empty_classes, empty = read_labels(tmp_path / "none.txt")
    assert empty_classes == [] and empty.shape == (0, 4)
    assert read_boxes_xyxy(tmp_path / "none.txt", 10, 10)[0].shape == (0, 4)


def test_format_labels_clips_to_the_image_and_reads_back(tmp_path: Path):
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.05, 0.5, 0.2, 0.2]], np.float32)
    text = format_labels(boxes, [1, 4])
    first, second = text.splitlines()
    assert first == "1 0.500000 0.500000 0.200000 0.200000"
    assert second == "4 0.075000 0.500000 0.150000 0.200000"  # left half-width cut off
    classes, back = read_labels(_write(tmp_path / "l.txt", text))
    assert classes == [1, 4] and back.shape == (2, 4)
    with pytest.raises(ValueError):
        format_labels(boxes, [1])  # one class per box


# --- images ------------------------------------------------------------------------------


def test_image_listing_and_counting(tmp_path: Path):
    for name in ("b.JPG", "a.png", "notes.txt", "c.jpeg"):
        _write(tmp_path / "train" / "images" / name)
    _write(tmp_path / "train" / "images" / "nested" / "d.jpg")
    _write(tmp_path / "valid" / "images" / "e.jpg")
    assert is_image(Path("x.JPG")) and not is_image(Path("x.txt"))
    assert [p.name for p in list_images(tmp_path / "train" / "images")] == [
        "a.png",
        "b.JPG",
        "c.jpeg",
    ]
    assert list_images(tmp_path / "absent") == []
    assert count_images(tmp_path) == {"train": 4, "valid": 1}  # sub-folders count; no test


# --- data.yaml ---------------------------------------------------------------------------


def test_read_names_in_both_forms(tmp_path: Path):
    listed = _write(tmp_path / "a.yaml", "names: [A, B]\nnc: 2\n")
    keyed = _write(tmp_path / "b.yaml", "names: {1: B, 0: A}\n")
    assert read_names(listed) == read_names(keyed) == ("A", "B")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("names: {0: A, 2: C}\n", "keyed 0..n-1"),
        ("names: []\n", "non-empty list"),
        ("nc: 2\n", "non-empty list"),
        ("names: [A, B]\nnc: 3\n", "nc=3 but 2 names"),
        ("- just\n- a list\n", "not a YAML mapping"),
        ("names: [A\n", "cannot read"),
    ],
)
def test_bad_names_are_named(tmp_path: Path, text: str, fragment: str):
    with pytest.raises(AcquireError, match=fragment):
        read_names(_write(tmp_path / "data.yaml", text))


def test_unreadable_yaml_is_an_acquire_error(tmp_path: Path):
    with pytest.raises(AcquireError, match="cannot read"):
        read_data_yaml(tmp_path / "absent.yaml")
    with pytest.raises(AcquireError, match="cannot read"):
        read_data_yaml(_write(tmp_path / "latin.yaml", b"names: [\xe9]\n"))


def test_split_images_resolves_path_beside_the_yaml(tmp_path: Path):
    root = tmp_path / "export"
    _write(root / "valid" / "images" / "a.jpg")
    _write(root / "valid" / "images" / "b.jpg")
    data = _write(root / "data.yaml", "path: .\ntrain: train/images\nval: valid/images\n")
    images, spec = split_images(data, "valid")
    assert images == (root / "valid" / "images").resolve() and spec["val"] == "valid/images"
    assert count_split_images(data, "valid") == 2
    with pytest.raises(AcquireError, match="names no 'test' split"):
        split_images(data, "test")


def test_split_images_copes_with_roboflows_parent_paths(tmp_path: Path):
    root = tmp_path / "export"
    _write(root / "test" / "images" / "a.jpg")
    data = _write(root / "data.yaml", "test: ../test/images\n")
    assert split_images(data, "test")[0] == (root / "test" / "images").resolve()


def test_data_yaml_spec_round_trips(tmp_path: Path):
    spec = data_yaml_spec(tmp_path, ["train", "valid"], ["A", "B", "C"])
    assert spec == {
        "path": str(tmp_path),
        "train": "train/images",
        "val": "valid/images",
        "nc": 3,
        "names": ["A", "B", "C"],
    }
    custom = data_yaml_spec(".", {"train": "t/images"}, ["Ä"])
    assert custom == {"path": ".", "train": "t/images", "nc": 1, "names": ["Ä"]}
    path = write_data_yaml(tmp_path / "data.yaml", spec)
    assert yaml.safe_load(path.read_text()) == spec
    assert list(yaml.safe_load(path.read_text())) == list(spec)  # keys keep their order
    assert read_names(path) == ("A", "B", "C")
