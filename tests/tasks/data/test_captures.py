"""A learner's captures: YOLO layout, split by burst, valid like any dataset, deletable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.records import LETTERS, Box
from tasks.data.captures import (
    check_learner,
    delete_burst,
    delete_learner,
    learner_dir,
    read_bursts,
    save_burst,
)
from tasks.data.validate import validate_dataset
from tasks.data.yolo_format import read_label_lines, read_names

FRAME = np.full((240, 320, 3), 120, dtype=np.uint8)
BOX = Box(x1=80, y1=60, x2=240, y2=220)


def test_a_burst_is_frames_and_labels_of_the_asked_letter(tmp_path: Path):
    root = learner_dir(tmp_path, "ann")

    burst = save_burst(root, "C", [FRAME, FRAME, FRAME], [BOX] * 3)

    assert (burst.letter, burst.split, burst.frames) == ("C", "train", 3)
    images = sorted((root / "train" / "images").iterdir())
    assert [p.stem for p in images] == [f"{burst.id}-{i:02d}" for i in range(3)]
    line = read_label_lines(root / "train" / "labels" / f"{burst.id}-00.txt", nc=26)[0]
    assert line.cls == LETTERS.index("C")
    assert (line.cx, line.cy, line.w, line.h) == pytest.approx((0.5, 140 / 240, 0.5, 160 / 240))
    assert read_names(root / "data.yaml") == LETTERS
    assert read_bursts(root) == [burst]


def test_bursts_not_frames_are_split_and_every_letter_holds_one_out(tmp_path: Path):
    root = learner_dir(tmp_path, "ann")
    splits = {
        letter: [save_burst(root, letter, [FRAME], [BOX]).split for _ in range(4)]
        for letter in ("A", "B")
    }
    assert splits == {letter: ["train", "valid", "train", "train"] for letter in ("A", "B")}
    for burst in read_bursts(root):  # all frames of a burst are on one side
        assert len(list((root / burst.split / "images").glob(f"{burst.id}-*"))) == burst.frames


def test_captures_validate_like_any_dataset(tmp_path: Path):
    root = learner_dir(tmp_path, "ann")
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for letter in ("A", "A"):
        save_burst(root, letter, [noise, noise[::-1]], [BOX, BOX])
    report = validate_dataset(root, LETTERS, allow_leakage=True)
    assert report.ok, report


def test_a_burst_and_all_captures_can_be_deleted(tmp_path: Path):
    root = learner_dir(tmp_path, "ann")
    first = save_burst(root, "A", [FRAME, FRAME], [BOX, BOX])
    second = save_burst(root, "A", [FRAME], [BOX])

    delete_burst(root, first.id)

    assert read_bursts(root) == [second]
    assert not list(root.rglob(f"{first.id}-*"))
    assert delete_learner(tmp_path, "ann") and not root.exists()
    assert not delete_learner(tmp_path, "ann"), "nothing left to delete"


@pytest.mark.parametrize("name", ["../x", "Ann", "ann lee", "", "-x", "a" * 33])
def test_a_learner_name_cannot_escape_or_break_an_alias(name: str):
    with pytest.raises(ValueError, match="lower-case letters, digits or dashes"):
        check_learner(name)


def test_bad_bursts_are_refused_before_anything_is_written(tmp_path: Path):
    root = learner_dir(tmp_path, "ann")
    with pytest.raises(ValueError, match="not one of A-Z"):
        save_burst(root, "a", [FRAME], [BOX])
    with pytest.raises(ValueError, match="one box each"):
        save_burst(root, "A", [FRAME, FRAME], [BOX])
    assert read_bursts(root) == []
